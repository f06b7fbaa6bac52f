//! What every document says about the node: `host.*` (the operating system from
//! `/etc/os-release`, the machine id, the kernel release, the architecture) and the names of
//! user and group ids (`/etc/passwd`, `/etc/group`). Read once, when the sink starts: these
//! files are small and trusted (root-owned), and each is read up to a bound.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

/// Most bytes read of any one of these files.
const MAX_FILE: u64 = 1 << 20;

fn read(path: &str) -> String {
    use std::io::Read;
    let mut text = String::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(MAX_FILE).read_to_string(&mut text);
    }
    text
}

/// The node as ECS describes a host, and its account names.
#[derive(Debug, Clone, Default)]
pub struct HostInfo {
    /// `host.*` but `host.name` (each event's node name).
    pub host: Map<String, Value>,
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl HostInfo {
    /// Reads this machine.
    pub fn read() -> HostInfo {
        HostInfo::from_files(
            &read("/etc/os-release"),
            read("/etc/machine-id").trim(),
            read("/proc/sys/kernel/osrelease").trim(),
            read("/proc/sys/kernel/hostname").trim(),
            &read("/etc/passwd"),
            &read("/etc/group"),
        )
    }

    /// From the files' contents.
    pub fn from_files(
        os_release: &str,
        machine_id: &str,
        kernel: &str,
        hostname: &str,
        passwd: &str,
        group: &str,
    ) -> HostInfo {
        let os: HashMap<&str, String> = os_release
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim().trim_matches('"').to_string()))
            .collect();
        let mut o = json!({ "type": "linux" });
        let id = os.get("ID").cloned().unwrap_or_default();
        // ECS's family is the distribution family (`debian`, `redhat`): the first of ID_LIKE
        // that names one, or the distribution itself.
        let family = os
            .get("ID_LIKE")
            .and_then(|l| {
                l.split_whitespace()
                    .find(|f| matches!(*f, "debian" | "rhel" | "fedora" | "suse" | "arch"))
            })
            .map(|f| {
                if matches!(f, "rhel" | "fedora") {
                    "redhat"
                } else {
                    f
                }
            })
            .map(str::to_string)
            .unwrap_or_else(|| id.clone());
        for (field, value) in [
            ("platform", id.clone()),
            ("family", family),
            ("name", os.get("NAME").cloned().unwrap_or_default()),
            ("version", os.get("VERSION_ID").cloned().unwrap_or_default()),
            ("full", os.get("PRETTY_NAME").cloned().unwrap_or_default()),
            ("kernel", kernel.to_string()),
        ] {
            if !value.is_empty() {
                o[field] = Value::from(value);
            }
        }
        let mut host = Map::new();
        host.insert("os".into(), o);
        host.insert("architecture".into(), Value::from(std::env::consts::ARCH));
        if !machine_id.is_empty() {
            host.insert("id".into(), Value::from(machine_id));
        }
        if !hostname.is_empty() {
            host.insert("hostname".into(), Value::from(hostname));
        }
        HostInfo {
            host,
            users: names(passwd),
            groups: names(group),
        }
    }

    /// The name of user id `uid` on this node.
    pub fn user(&self, uid: u32) -> Option<&str> {
        self.users.get(&uid).map(String::as_str)
    }

    /// The name of group id `gid` on this node.
    pub fn group(&self, gid: u32) -> Option<&str> {
        self.groups.get(&gid).map(String::as_str)
    }
}

/// `name:x:id:...` lines (passwd and group files) by id; the first name of an id wins.
fn names(text: &str) -> HashMap<u32, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let mut f = line.split(':');
        let (Some(name), Some(_), Some(id)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if let Ok(id) = id.parse() {
            out.entry(id).or_insert_with(|| name.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_machine_id_and_account_names_become_host_fields() {
        let h = HostInfo::from_files(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n",
            "0123456789abcdef",
            "6.1.0-26-cloud-amd64",
            "node-a",
            "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/:/bin/false\nbroken line\n",
            "root:x:0:\nadm:x:4:syslog\n",
        );
        assert_eq!(h.host["os"]["type"], "linux");
        assert_eq!(h.host["os"]["family"], "debian");
        assert_eq!(h.host["os"]["platform"], "debian");
        assert_eq!(h.host["os"]["version"], "12");
        assert_eq!(h.host["os"]["kernel"], "6.1.0-26-cloud-amd64");
        assert_eq!(h.host["id"], "0123456789abcdef");
        assert_eq!(h.user(65534), Some("nobody"));
        assert_eq!(h.group(4), Some("adm"));
        assert_eq!(h.user(7), None);
        let rhel = HostInfo::from_files(
            "ID=rocky\nID_LIKE=\"rhel centos fedora\"\n",
            "",
            "",
            "",
            "",
            "",
        );
        assert_eq!(rhel.host["os"]["family"], "redhat");
    }
}
