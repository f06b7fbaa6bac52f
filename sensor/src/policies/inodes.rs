//! Protected files by what they are, not by the name one mount tree gives them.
//!
//! A file-open rule's exact path values are also written into `vigil_path_inodes` as the
//! device and inode the path names now, with the mask of rule slots naming it, so the kernel's
//! evaluator matches the file however it was reached: another hard link to it, a bind mount of
//! it inside `unshare -Urm`, or the same file seen from another mount namespace. Names are
//! looked up again on every housekeeping pass, so a file replaced under its name (a package
//! update, `passwd` renaming a new `/etc/shadow` into place) is followed within seconds; the
//! previous inode keeps matching until then.
//!
//! What is not written, and why: a value that is a symbolic link (the kernel matches the file
//! it resolves to, and the path rule never names that link itself), a path that does not exist
//! yet (written once it does), and files on btrfs and overlayfs, where the device `stat` reports
//! is not the superblock's the kernel sees, so the key could never match.

use std::{collections::BTreeMap, os::unix::fs::MetadataExt, path::Path};

use aya::{
    maps::{HashMap, MapData},
    Pod,
};
use vigil_bpf_kprobes::abi::InodeKey;

use super::{map_err, PolicyLoadError};

const BTRFS_SUPER_MAGIC: i64 = 0x9123_683e;
const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;

#[derive(Clone, Copy)]
#[repr(transparent)]
pub(super) struct InodeKeyPod(InodeKey);
// SAFETY: #[repr(C)] integers only.
unsafe impl Pod for InodeKeyPod {}

/// The file `path` names now, as the kernel keys it, or `None` where no key can stand for it
/// (see the module's docs).
pub fn inode_of(path: &str) -> Option<InodeKey> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if meta.file_type().is_symlink() {
        return None;
    }
    let magic = crate::loader::pins::fs_magic(Path::new(path)).ok()?;
    if magic == BTRFS_SUPER_MAGIC || magic == OVERLAYFS_SUPER_MAGIC {
        return None;
    }
    let dev = meta.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    Some(InodeKey {
        ino: meta.ino(),
        dev: (major << 20) | (minor & 0xf_ffff),
        _pad0: 0,
    })
}

/// The inode keys in the kernel and the names behind them.
pub(super) struct InodeKeys {
    map: HashMap<MapData, InodeKeyPod, u64>,
    masks: BTreeMap<InodeKey, u64>,
    /// Per rule slot: each exact value and the file it named when last looked up.
    named: BTreeMap<u32, Vec<(String, Option<InodeKey>)>>,
}

impl InodeKeys {
    pub(super) fn new(map: HashMap<MapData, InodeKeyPod, u64>) -> Self {
        InodeKeys {
            map,
            masks: BTreeMap::new(),
            named: BTreeMap::new(),
        }
    }

    /// Writes the files `values` name for rule `slot`. All or nothing.
    pub(super) fn add(
        &mut self,
        policy: &str,
        slot: u32,
        values: &[String],
    ) -> Result<(), PolicyLoadError> {
        let named: Vec<(String, Option<InodeKey>)> =
            values.iter().map(|v| (v.clone(), inode_of(v))).collect();
        let mut done = Vec::new();
        for key in named.iter().filter_map(|(_, k)| *k) {
            if let Err(e) = self.set_bit(key, slot, true) {
                for k in done {
                    let _ = self.set_bit(k, slot, false);
                }
                return Err(map_err(policy, "vigil_path_inodes", e));
            }
            done.push(key);
        }
        self.named.insert(slot, named);
        Ok(())
    }

    /// Removes rule `slot`'s files.
    pub(super) fn remove(&mut self, slot: u32) {
        for key in self
            .named
            .remove(&slot)
            .into_iter()
            .flatten()
            .filter_map(|(_, k)| k)
        {
            let _ = self.set_bit(key, slot, false);
        }
    }

    /// Looks every name up again and moves the keys of those that name another file now (the
    /// new file is written before the old one goes). Returns the names moved, for the log.
    pub(super) fn refresh(&mut self) -> Vec<String> {
        let mut moved = Vec::new();
        let slots: Vec<u32> = self.named.keys().copied().collect();
        for slot in slots {
            let Some(named) = self.named.get(&slot).cloned() else {
                continue;
            };
            let mut now = named.clone();
            for (i, (value, before)) in named.iter().enumerate() {
                let after = inode_of(value);
                if after == *before {
                    continue;
                }
                if let Some(k) = after {
                    if self.set_bit(k, slot, true).is_err() {
                        continue; // map full: the old key stays, tried again next pass
                    }
                }
                if let Some(k) = before {
                    let _ = self.set_bit(*k, slot, false);
                }
                now[i].1 = after;
                moved.push(value.clone());
            }
            self.named.insert(slot, now);
        }
        moved
    }

    fn set_bit(&mut self, key: InodeKey, slot: u32, on: bool) -> Result<(), aya::maps::MapError> {
        let old = self.masks.get(&key).copied().unwrap_or(0);
        let bit = 1u64 << (slot & 63);
        let new = if on { old | bit } else { old & !bit };
        if new == old {
            return Ok(());
        }
        if new == 0 {
            self.map.remove(&InodeKeyPod(key))?;
            self.masks.remove(&key);
        } else {
            self.map.insert(InodeKeyPod(key), new, 0)?;
            self.masks.insert(key, new);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hard_link_has_the_key_of_its_file_and_a_symlink_has_none() {
        let dir = vigil_tests::TempDir::new("inodes");
        let file = dir.path().join("secret");
        std::fs::write(&file, "x").unwrap();
        let link = dir.path().join("other-name");
        std::fs::hard_link(&file, &link).unwrap();
        let sym = dir.path().join("sym");
        std::os::unix::fs::symlink(&file, &sym).unwrap();
        let key = inode_of(file.to_str().unwrap());
        assert!(
            key.is_some(),
            "no inode key for a file in {}: btrfs or overlayfs there (no key by design); run the test where TMPDIR is another filesystem",
            dir.path().display()
        );
        assert_eq!(key, inode_of(link.to_str().unwrap()));
        assert_eq!(inode_of(sym.to_str().unwrap()), None);
        assert_eq!(inode_of(dir.path().join("absent").to_str().unwrap()), None);
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!(key.unwrap().ino, meta.ino());
    }
}
