//! From a process's cgroup path to its Kubernetes pod and container: the kubelet names each
//! pod's cgroup after the pod's UID and each container's after the runtime's container id, so
//! the path identifies the pod even before the API server has told the agent about it.
//!
//! Both cgroup drivers, on cgroup v2 and v1 (the path is relative to the hierarchy's root):
//!
//! - systemd: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with _>.slice/`
//!   then `cri-containerd-<id>.scope`, `crio-<id>.scope` or `docker-<id>.scope`; a Guaranteed
//!   pod's slice sits directly under `kubepods.slice` (`kubepods-pod<uid>.slice`);
//! - cgroupfs: `/kubepods/burstable/pod<uid>/<id>` (`/kubepods/pod<uid>/<id>` when Guaranteed),
//!   CRI-O's container as `crio-<id>`.
//!
//! A cgroup name is whatever the user who owns a delegated subtree chose to call a directory:
//! the pod's part must start at the hierarchy's root (or under the kubelet's own
//! `kubelet.slice`/`kubelet` root), so a user cannot dress a cgroup of theirs,
//! `/user.slice/user-1000.slice/…/kubepods/pod<uid>/<id>`, as someone else's pod. UIDs and ids
//! are checked character by character; anything else is not a pod.

/// The container runtime a cgroup name says made the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// `cri-containerd-<id>.scope`.
    Containerd,
    /// `crio-<id>.scope`, `crio-<id>`.
    CriO,
    /// `docker-<id>.scope`.
    Docker,
    /// A bare id (the cgroupfs driver under containerd or Docker).
    Unnamed,
}

impl Runtime {
    /// The scheme Kubernetes writes before a container id (`containerd://<id>`); `None` when the
    /// path does not say.
    pub fn scheme(self) -> Option<&'static str> {
        match self {
            Runtime::Containerd => Some("containerd"),
            Runtime::CriO => Some("cri-o"),
            Runtime::Docker => Some("docker"),
            Runtime::Unnamed => None,
        }
    }
}

/// The pod's QoS class, from the slice it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    /// Directly under `kubepods`.
    Guaranteed,
    /// Under `burstable`.
    Burstable,
    /// Under `besteffort`.
    BestEffort,
}

/// A container's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCgroup {
    /// The runtime's container id: 64 lower-case hex digits.
    pub id: String,
    /// Which runtime the name says.
    pub runtime: Runtime,
}

/// A pod's cgroup, and the container's when the path goes that deep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCgroup {
    /// The pod's UID as the API server writes it (`8-4-4-4-12` hex, dashes), or a static pod's
    /// 32 hex digit config hash.
    pub pod_uid: String,
    /// The QoS class.
    pub qos: Qos,
    /// The container, when the process is in one (not the pod's own cgroup, not CRI-O's
    /// `conmon`).
    pub container: Option<ContainerCgroup>,
}

fn hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `s` as a pod UID: a UUID with dashes (the systemd driver writes `_` for `-`), or 32 hex digits.
fn pod_uid(s: &str) -> Option<String> {
    let s = s.replace('_', "-");
    let groups: Vec<&str> = s.split('-').collect();
    let uuid = groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && hex(g));
    let hash = s.len() == 32 && hex(&s);
    (uuid || hash).then_some(s)
}

/// A container's cgroup name; `Some(None)` for a cgroup of the pod that is no container's
/// (CRI-O's `conmon`).
fn container(name: &str) -> Option<Option<ContainerCgroup>> {
    let name = name.strip_suffix(".scope").unwrap_or(name);
    if name.starts_with("crio-conmon-") {
        return Some(None);
    }
    let (runtime, id) = if let Some(id) = name.strip_prefix("cri-containerd-") {
        (Runtime::Containerd, id)
    } else if let Some(id) = name.strip_prefix("crio-") {
        (Runtime::CriO, id)
    } else if let Some(id) = name.strip_prefix("docker-") {
        (Runtime::Docker, id)
    } else {
        (Runtime::Unnamed, name)
    };
    (id.len() == 64 && hex(id)).then(|| {
        Some(ContainerCgroup {
            id: id.to_string(),
            runtime,
        })
    })
}

/// The pod (and container) a cgroup path names, if it names one where the kubelet puts pods.
pub fn parse(path: &str) -> Option<PodCgroup> {
    let mut parts = path.trim_start_matches('/').split('/').peekable();
    // The kubelet's own root, when it has one (`--cgroup-root` or the kubelet's slice).
    if matches!(parts.peek(), Some(&"kubelet.slice") | Some(&"kubelet")) {
        parts.next();
    }
    let top = parts.next()?;
    let systemd = match top {
        "kubepods" => false,
        "kubepods.slice" | "kubelet-kubepods.slice" => true,
        _ => return None,
    };
    let mut qos = Qos::Guaranteed;
    let mut next = parts.next()?;
    let class = if systemd {
        next.strip_suffix(".slice")
            .and_then(|s| s.rsplit('-').next())
            .filter(|c| matches!(*c, "burstable" | "besteffort") && !next.contains("-pod"))
    } else {
        Some(next).filter(|c| matches!(*c, "burstable" | "besteffort"))
    };
    if let Some(c) = class {
        qos = if c == "burstable" {
            Qos::Burstable
        } else {
            Qos::BestEffort
        };
        next = parts.next()?;
    }
    let uid = if systemd {
        let slice = next.strip_suffix(".slice")?;
        let (_, uid) = slice.rsplit_once("-pod")?;
        pod_uid(uid)?
    } else {
        pod_uid(next.strip_prefix("pod")?)?
    };
    let container = match parts.next() {
        None => None,
        Some(name) => container(name)?,
    };
    Some(PodCgroup {
        pod_uid: uid,
        qos,
        container,
    })
}

/// Where the kubelet may have made the cgroup of pod `uid`, below the hierarchy's root: every
/// QoS class under both drivers, with and without the kubelet's own root. [`parse`] reads each
/// as the pod's cgroup.
pub fn pod_dirs(uid: &str) -> Vec<String> {
    let under = uid.replace('-', "_");
    let mut pods = Vec::new();
    for top in ["kubepods", "kubelet-kubepods"] {
        pods.push(format!("{top}.slice/{top}-pod{under}.slice"));
        for qos in ["burstable", "besteffort"] {
            pods.push(format!(
                "{top}.slice/{top}-{qos}.slice/{top}-{qos}-pod{under}.slice"
            ));
        }
    }
    pods.push(format!("kubepods/pod{uid}"));
    for qos in ["burstable", "besteffort"] {
        pods.push(format!("kubepods/{qos}/pod{uid}"));
    }
    let mut all = pods.clone();
    for root in ["kubelet.slice", "kubelet"] {
        all.extend(pods.iter().map(|p| format!("{root}/{p}")));
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0c5d3a4e-7f1b-4c2d-9e8f-1a2b3c4d5e6f";
    const ID: &str = "4f1e2b9c0d3a5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f";

    fn systemd_uid() -> String {
        UID.replace('-', "_")
    }

    #[test]
    fn every_place_a_pod_s_cgroup_may_be_is_read_as_that_pod() {
        let dirs = pod_dirs(UID);
        assert_eq!(dirs.len(), 27);
        for d in &dirs {
            let p = parse(d).unwrap_or_else(|| panic!("{d}"));
            assert_eq!((p.pod_uid.as_str(), p.container), (UID, None), "{d}");
        }
    }

    #[test]
    fn the_systemd_driver_names_pod_and_container_for_each_runtime() {
        for (scope, runtime) in [
            (format!("cri-containerd-{ID}.scope"), Runtime::Containerd),
            (format!("crio-{ID}.scope"), Runtime::CriO),
            (format!("docker-{ID}.scope"), Runtime::Docker),
        ] {
            let path = format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/{scope}",
                systemd_uid()
            );
            let p = parse(&path).unwrap_or_else(|| panic!("{path}"));
            assert_eq!(p.pod_uid, UID);
            assert_eq!(p.qos, Qos::Burstable);
            assert_eq!(
                p.container,
                Some(ContainerCgroup {
                    id: ID.into(),
                    runtime
                })
            );
        }
        let guaranteed = format!(
            "/kubepods.slice/kubepods-pod{}.slice/cri-containerd-{ID}.scope",
            systemd_uid()
        );
        assert_eq!(parse(&guaranteed).unwrap().qos, Qos::Guaranteed);
        let besteffort = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice",
            systemd_uid()
        );
        let p = parse(&besteffort).unwrap();
        assert_eq!(
            (p.qos, p.container),
            (Qos::BestEffort, None),
            "the pod's own cgroup"
        );
    }

    #[test]
    fn the_cgroupfs_driver_names_pod_and_container() {
        let p = parse(&format!("/kubepods/burstable/pod{UID}/{ID}")).unwrap();
        assert_eq!(p.pod_uid, UID);
        assert_eq!(p.container.unwrap().runtime, Runtime::Unnamed);
        let p = parse(&format!("/kubepods/pod{UID}/crio-{ID}")).unwrap();
        assert_eq!(
            (p.qos, p.container.unwrap().runtime),
            (Qos::Guaranteed, Runtime::CriO)
        );
        let p = parse(&format!("/kubepods/besteffort/pod{UID}")).unwrap();
        assert_eq!((p.qos, p.container), (Qos::BestEffort, None));
        // A static pod's UID is its config hash.
        let hash = "6a4f0c9e1b2d3f4a5b6c7d8e9f0a1b2c";
        assert_eq!(
            parse(&format!("/kubepods/pod{hash}/{ID}")).unwrap().pod_uid,
            hash
        );
    }

    #[test]
    fn the_kubelet_s_own_root_and_crio_s_conmon_are_understood() {
        let p = parse(&format!(
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope",
            systemd_uid()
        ))
        .unwrap();
        assert_eq!((p.pod_uid.as_str(), p.qos), (UID, Qos::Burstable));
        let conmon = parse(&format!(
            "/kubepods.slice/kubepods-pod{}.slice/crio-conmon-{ID}.scope",
            systemd_uid()
        ))
        .unwrap();
        assert_eq!(
            conmon.container, None,
            "conmon is the pod's, not the container's"
        );
        let id = parse(&format!(
            "/kubepods.slice/kubepods-pod{}.slice/cri-containerd-{ID}.scope",
            systemd_uid()
        ))
        .unwrap()
        .container
        .unwrap();
        assert_eq!(id.runtime.scheme(), Some("containerd"));
    }

    #[test]
    fn cgroups_that_are_not_where_the_kubelet_puts_pods_name_no_pod() {
        for path in [
            "/".to_string(),
            "/system.slice/containerd.service".into(),
            format!("/system.slice/docker-{ID}.scope"),
            // A user's delegated subtree dressed as a pod.
            format!("/user.slice/user-1000.slice/user@1000.service/kubepods/pod{UID}/{ID}"),
            format!("/kubepods.slice/../kubepods/pod{UID}/{ID}"),
            // Not a UID, not an id.
            format!("/kubepods/burstable/podnot-a-uid/{ID}"),
            format!("/kubepods/burstable/pod{UID}/{}", &ID[..63]),
            format!("/kubepods/burstable/pod{UID}/{}", ID.to_uppercase()),
            format!("/kubepods/burstable/pod{UID}/{ID}é"),
            format!("/kubepods/burstable/pod{}", "é".repeat(36)),
        ] {
            assert_eq!(parse(&path), None, "{path}");
        }
    }
}
