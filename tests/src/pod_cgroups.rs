//! The cgroups the kubelet and a container runtime make for a pod, made by a test in the
//! hierarchy the agent reports (cgroup v1's memory hierarchy where it is mounted, else cgroup
//! v2, mounted at `/sys/fs/cgroup` when nothing is, as in the test VM), so that processes run
//! where a pod's would and the agent's cgroup path names that pod.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// A pod's UID for the tests: `<8 hex>` then a fixed tail.
pub fn pod_uid(head: &str) -> String {
    format!("{head}-7f1b-4c2d-9e8f-1a2b3c4d5e6f")
}

/// A container id: 64 hex digits starting with `head`.
pub fn container_id(head: &str) -> String {
    format!("{head}{}", "0".repeat(64 - head.len()))
}

/// The root of the hierarchy the agent reports cgroup paths from, mounted if needed.
pub fn hierarchy_root() -> PathBuf {
    let own = std::fs::read_to_string("/proc/self/cgroup").expect("read /proc/self/cgroup");
    let v1_memory = own.lines().any(|l| {
        let mut f = l.splitn(3, ':');
        let (id, ctrls) = (f.next().unwrap_or("0"), f.next().unwrap_or(""));
        id != "0" && ctrls.split(',').any(|c| c == "memory")
    });
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("read /proc/self/mounts");
    let found = mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (point, fstype, options) = (f.get(1)?, f.get(2)?, f.get(3)?);
        let wanted = if v1_memory {
            *fstype == "cgroup" && options.split(',').any(|o| o == "memory")
        } else {
            *fstype == "cgroup2"
        };
        wanted.then(|| PathBuf::from(point))
    });
    if let Some(root) = found {
        return root;
    }
    assert!(
        !v1_memory,
        "the memory cgroup hierarchy is in use but not mounted"
    );
    let root = PathBuf::from("/sys/fs/cgroup");
    let status = Command::new("mount")
        .args(["-t", "cgroup2", "cgroup2"])
        .arg(&root)
        .status()
        .expect("run mount");
    assert!(
        status.success(),
        "cannot mount cgroup2 at {}",
        root.display()
    );
    root
}

/// How the kubelet lays out its cgroups.
#[derive(Debug, Clone, Copy)]
pub enum Driver {
    /// `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope`.
    Systemd,
    /// `kubepods/besteffort/pod<uid>/<id>`.
    Cgroupfs,
}

/// One container's cgroup, removed (with the pod's and the QoS class's, when empty) on drop.
pub struct ContainerCgroup {
    /// The directories of its path, outermost first.
    dirs: Vec<PathBuf>,
    /// The container's directory.
    pub dir: PathBuf,
    /// Its path as the agent reports it (below the hierarchy's root).
    pub path: String,
}

impl ContainerCgroup {
    /// Makes the cgroups of container `id` of pod `uid` under `driver`.
    pub fn make(root: &Path, driver: Driver, uid: &str, id: &str) -> ContainerCgroup {
        let parts: Vec<String> = match driver {
            Driver::Systemd => vec![
                "kubepods.slice".into(),
                "kubepods-burstable.slice".into(),
                format!("kubepods-burstable-pod{}.slice", uid.replace('-', "_")),
                format!("cri-containerd-{id}.scope"),
            ],
            Driver::Cgroupfs => vec![
                "kubepods".into(),
                "besteffort".into(),
                format!("pod{uid}"),
                id.to_string(),
            ],
        };
        let mut dir = root.to_path_buf();
        let mut dirs = Vec::new();
        for p in &parts {
            dir.push(p);
            if !dir.exists() {
                std::fs::create_dir(&dir)
                    .unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            }
            dirs.push(dir.clone());
        }
        ContainerCgroup {
            dirs,
            path: format!("/{}", parts.join("/")),
            dir,
        }
    }

    /// A cgroup made below this one (as a process with rights on its cgroup could).
    pub fn nested(&self, name: &str) -> ContainerCgroup {
        let dir = self.dir.join(name);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        ContainerCgroup {
            dirs: vec![dir.clone()],
            path: format!("{}/{name}", self.path),
            dir,
        }
    }

    /// Runs `program args` inside the cgroup (a shell moves itself in, then execs it) and
    /// waits for it.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        let procs = self.dir.join("cgroup.procs");
        Command::new("/bin/sh")
            .arg("-c")
            .arg(r#"echo $$ > "$0" && exec "$@""#)
            .arg(&procs)
            .arg(program)
            .args(args)
            .output()
            .expect("run a process in the pod's cgroup")
    }
}

impl Drop for ContainerCgroup {
    fn drop(&mut self) {
        // Shared parents stay while another container's cgroup is in them (rmdir refuses).
        for d in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}
