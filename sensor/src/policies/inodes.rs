//! Protected files and named binaries by what they are, not by the name one mount tree gives
//! them.
//!
//! A file-open rule's exact path values are also written into `vigil_path_inodes` as the
//! device and inode the path names, with the mask of rule slots naming it, so the kernel's
//! evaluator matches the file however it was reached: another hard link to it, a bind mount of
//! it inside `unshare -Urm`, or the same file seen from another mount namespace. Its exact
//! `matchBinaries` values go into `vigil_bin_inodes` the same way; where every value has its
//! file, a binary matches only when its path names a value and the executable is one of those
//! files, so another binary bind-mounted over a named path does not pass for it. Names are
//! looked up again on every housekeeping pass (every second): a file replaced under its name
//! (a package update, `passwd` renaming a new `/etc/shadow` into place) is followed within a
//! second, and the files it named before keep matching while the rule lives, since a hard link,
//! a rename or a running process may still hold them. A number an old file freed and the file
//! system gave to a new one then matches too: that errs towards denying.
//!
//! What is not written, and why: a value that is a symbolic link (the kernel matches the file
//! it resolves to, and the path rule never names that link itself), a path that does not exist
//! yet (written once it does; a binary filter with such a value compares paths only), and files on btrfs and overlayfs, where the device `stat` reports
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

/// Files one name may have pointed at over a rule's life. Every one of them keeps matching
/// until the rule goes: an old `/etc/shadow` that `passwd` renamed away may still be reachable
/// through a hard link made earlier (or renamed elsewhere itself), and a daemon started before
/// its binary was upgraded still runs the old file. Past this many, a name's new files are
/// compared by path only.
const KEPT_PER_NAME: usize = 64;

/// The inode keys of one map in the kernel and the names behind them.
pub(super) struct InodeKeys {
    map: HashMap<MapData, InodeKeyPod, u64>,
    /// The map's name, for errors.
    name: &'static str,
    masks: BTreeMap<InodeKey, u64>,
    /// Per rule slot: each value and the files it named, the current one last.
    named: BTreeMap<u32, Vec<(String, Vec<InodeKey>)>>,
}

impl InodeKeys {
    pub(super) fn new(map: HashMap<MapData, InodeKeyPod, u64>, name: &'static str) -> Self {
        InodeKeys {
            map,
            name,
            masks: BTreeMap::new(),
            named: BTreeMap::new(),
        }
    }

    /// Writes the files `values` name for rule `slot`. All or nothing; returns the values
    /// without a file (missing, a link, or on a file system without keys).
    pub(super) fn add(
        &mut self,
        policy: &str,
        slot: u32,
        values: &[String],
    ) -> Result<Vec<String>, PolicyLoadError> {
        let named: Vec<(String, Vec<InodeKey>)> = values
            .iter()
            .map(|v| (v.clone(), inode_of(v).into_iter().collect()))
            .collect();
        let mut done = Vec::new();
        for key in named.iter().flat_map(|(_, k)| k.iter().copied()) {
            if let Err(e) = self.set_bit(key, slot, true) {
                for k in done {
                    let _ = self.set_bit(k, slot, false);
                }
                return Err(map_err(policy, self.name, e));
            }
            done.push(key);
        }
        let unkeyed = named
            .iter()
            .filter(|(_, k)| k.is_empty())
            .map(|(v, _)| v.clone())
            .collect();
        self.named.insert(slot, named);
        Ok(unkeyed)
    }

    /// Removes rule `slot`'s files.
    pub(super) fn remove(&mut self, slot: u32) {
        for key in self
            .named
            .remove(&slot)
            .into_iter()
            .flatten()
            .flat_map(|(_, k)| k)
        {
            let _ = self.set_bit(key, slot, false);
        }
    }

    /// Looks every name up again and adds the file of each that names another one now (the
    /// files it named before keep matching). Returns the names that moved, for the log.
    pub(super) fn refresh(&mut self) -> Vec<String> {
        let mut moved = Vec::new();
        let slots: Vec<u32> = self.named.keys().copied().collect();
        for slot in slots {
            let Some(mut named) = self.named.remove(&slot) else {
                continue;
            };
            for (value, keys) in named.iter_mut() {
                let Some(now) = inode_of(value) else { continue };
                if keys.contains(&now) || keys.len() >= KEPT_PER_NAME {
                    continue;
                }
                if self.set_bit(now, slot, true).is_err() {
                    continue; // map full: tried again next pass
                }
                keys.push(now);
                moved.push(value.clone());
            }
            self.named.insert(slot, named);
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
