//! Enforcement that outlives the agent: its links and maps pinned in bpffs.
//!
//! Every link the agent makes is pinned under its own generation directory
//! (`<bpf dir>/gen-<abi>-<boot ns>/links/`), with the object's maps beside them (`maps/`). A
//! pinned link stays attached after the agent's descriptors close, so a crash, `kill -9`, an
//! OOM kill or an upgrade leaves every program running with the rules the agent last wrote;
//! the tail-call arrays are pinned too, since the kernel empties a program array once no
//! process or pin holds it. A starting agent loads and attaches its own generation first and
//! only then retires the others ([`PinDir::retire_others`]): make before break, so there is no
//! moment without enforcement. What the old programs wrote while no agent read it is counted
//! from their pinned ring buffer and drop counters and reported. `vigil agent --cleanup`
//! ([`cleanup`]) removes every generation.
//!
//! The directory is root's: it must be on bpffs, owned by root and writable by no one else,
//! or the agent refuses to pin there (another user's pins could stand in for ours).

use std::{
    ffi::CString,
    os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

use aya::{
    maps::{Array, Map, MapData, PerCpuArray, RingBuf},
    programs::links::{FdLink, PinnedLink},
    Ebpf, Pod,
};
use vigil_bpf_kprobes::abi;

/// Where the agent pins its state unless told otherwise.
pub const DEFAULT_DIR: &str = "/sys/fs/bpf/vigil";

/// statfs(2)'s `f_type` of bpffs.
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// The version of the pinned state's layout (maps, the config's fields, the records): an
/// agent reads an older generation's counters field by field only when it is its own. Kept
/// as bytes in the binary and read at run time, so that the upgrade test can make a build of
/// another version by changing these bytes in a copy of the binary.
#[used]
static ABI_MARK: [u8; 24] = *b"vigil-pinned-abi=0001\0\0\0";

/// This build's pinned-state version (see [`ABI_MARK`]).
pub fn abi_version() -> u32 {
    // Read through a volatile pointer: the compiler must not fold the bytes a test patches.
    let bytes: [u8; 24] = unsafe { std::ptr::read_volatile(&ABI_MARK) };
    bytes[17..21]
        .iter()
        .try_fold(0u32, |v, b| {
            b.is_ascii_digit().then(|| v * 10 + u32::from(b - b'0'))
        })
        .unwrap_or(0)
}

/// Why the pin directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// A file system call failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The directory is not one root alone controls on bpffs.
    #[error("{path}: {reason}; {fix}")]
    Unsafe {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
        /// How to fix it.
        fix: &'static str,
    },
    /// The kernel refused to pin an object.
    #[error("cannot pin {what} at {path}: {detail}")]
    Pin {
        /// The object.
        what: String,
        /// The path.
        path: PathBuf,
        /// The kernel's or aya's reason.
        detail: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PinError + '_ {
    move |source| PinError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The agent's pin directory and its own generation in it.
#[derive(Debug)]
pub struct PinDir {
    /// None when the directory cannot be trusted: nothing is pinned or retired there.
    root: Option<PathBuf>,
    /// This agent's generation, when it persists its enforcement.
    own: Option<PathBuf>,
    next: u64,
}

/// A link the agent holds: pinned in its generation (it outlives the agent) or only by its
/// descriptor (it goes with the agent).
#[derive(Debug)]
pub enum HeldLink {
    /// Held by the descriptor alone (never read: closing it detaches the link).
    Owned(#[allow(dead_code)] FdLink),
    /// Pinned in bpffs as well.
    Pinned(PinnedLink),
    /// A link aya did not make (the fmod_ret program's), by descriptor and maybe its pin.
    Raw(#[allow(dead_code)] std::os::fd::OwnedFd, Option<PathBuf>),
}

impl HeldLink {
    /// Detaches the link: removes its pin, then closes it.
    pub fn release(self) {
        // A pin already removed (by `vigil agent --cleanup`) leaves the descriptor only.
        match self {
            HeldLink::Pinned(p) => drop(p.unpin()),
            HeldLink::Raw(_, Some(path)) => drop(std::fs::remove_file(path)),
            _ => {}
        }
    }
}

/// What an earlier agent's generation left, counted when it was retired.
#[derive(Debug, Default, Clone, serde::Serialize, PartialEq, Eq)]
pub struct Retired {
    /// Its directory's name.
    pub generation: String,
    /// Its pinned-state version; not ours means its counters were read as far as the kernel's
    /// own layout goes.
    pub abi: u32,
    /// Links it held attached until this agent's were in place.
    pub links: usize,
    /// Its agent still ran (an upgrade's overlap): it reads and reports its own records, and
    /// nothing of its ring was read here.
    pub running: bool,
    /// Records in its ring buffer that no agent read.
    pub unread: u64,
    /// Records its programs could not queue (ring buffer full) that its agent had not
    /// reported: with `unread`, what was lost while no agent read.
    pub dropped: u64,
}

impl Retired {
    /// Records lost while no agent read.
    pub fn lost(&self) -> u64 {
        self.unread + self.dropped
    }
}

impl PinDir {
    /// Opens (creating it 0700 when missing) the pin directory `root`, and this agent's
    /// generation in it when `persist`.
    pub fn open(root: &Path, persist: bool) -> Result<PinDir, PinError> {
        match std::fs::symlink_metadata(root) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !persist {
                    return Ok(PinDir {
                        root: Some(root.to_path_buf()),
                        own: None,
                        next: 0,
                    });
                }
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(root)
                    .map_err(io(root))?;
            }
            Err(e) => return Err(io(root)(e)),
        }
        check_dir(root)?;
        let own = if persist {
            // Its owner in its name, so a next agent tells a generation whose agent still
            // runs (an upgrade's overlap: it reads its own records) from one left behind.
            let (pid, ticks) = own_process();
            let dir = root.join(format!(
                "gen-{:04}-{}-{pid}-{ticks}",
                abi_version(),
                boot_ns()
            ));
            for sub in ["", "links", "maps"] {
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(dir.join(sub))
                    .map_err(io(&dir))?;
            }
            Some(dir)
        } else {
            None
        };
        Ok(PinDir {
            root: Some(root.to_path_buf()),
            own,
            next: 0,
        })
    }

    /// A directory the agent neither pins in nor retires from (it could not be trusted).
    pub fn unused() -> PinDir {
        PinDir {
            root: None,
            own: None,
            next: 0,
        }
    }

    /// This agent's generation, when it persists.
    pub fn own(&self) -> Option<&Path> {
        self.own.as_deref()
    }

    /// Holds `link`, pinned in this generation when the agent persists (`what` names the pin
    /// for whoever lists the directory).
    pub fn hold(&mut self, link: FdLink, what: &str) -> Result<HeldLink, PinError> {
        let Some(path) = self.next_path(what) else {
            return Ok(HeldLink::Owned(link));
        };
        link.pin(&path)
            .map(HeldLink::Pinned)
            .map_err(|e| PinError::Pin {
                what: format!("the link of {what}"),
                path,
                detail: e.to_string(),
            })
    }

    /// Holds a link aya did not make, pinned as [`PinDir::hold`] pins.
    pub fn hold_raw(
        &mut self,
        link: std::os::fd::OwnedFd,
        what: &str,
    ) -> Result<HeldLink, PinError> {
        let Some(path) = self.next_path(what) else {
            return Ok(HeldLink::Raw(link, None));
        };
        super::fmod_ret::pin(&link, &path).map_err(|e| PinError::Pin {
            what: format!("the link of {what}"),
            path: path.clone(),
            detail: e.to_string(),
        })?;
        Ok(HeldLink::Raw(link, Some(path)))
    }

    /// The path the next link's pin takes, or None when this agent does not pin (any more).
    fn next_path(&mut self, what: &str) -> Option<PathBuf> {
        let own = self.own.as_ref()?;
        if !own.join("links").is_dir() {
            // Removed under the running agent (`vigil agent --cleanup`): what it attaches from
            // now on goes with it, as the rest of its enforcement now does.
            self.own = None;
            return None;
        }
        self.next += 1;
        let name: String = what
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(64)
            .collect();
        Some(own.join("links").join(format!("{:04}-{name}", self.next)))
    }

    /// Pins every map of `ebpf` in this generation (before the agent takes any out of it).
    pub fn pin_maps(&self, ebpf: &Ebpf) -> Result<usize, PinError> {
        let Some(own) = &self.own else {
            return Ok(0);
        };
        let mut n = 0;
        for (name, map) in ebpf.maps() {
            if name.starts_with('.') {
                continue;
            }
            let path = own.join("maps").join(name);
            map.pin(&path).map_err(|e| PinError::Pin {
                what: format!("map {name}"),
                path,
                detail: e.to_string(),
            })?;
            n += 1;
        }
        Ok(n)
    }

    /// Writes this agent into every earlier generation's config as its successor, so that
    /// their programs leave this agent's calls alone until it retires them (an old kill on
    /// connects would otherwise kill it when it reaches its API server or exporters). Only
    /// generations of this pinned layout; returns how many took it.
    pub fn exempt_in_others(&self) -> Result<usize, PinError> {
        let (Some(root), Some(_)) = (&self.root, &self.own) else {
            return Ok(0);
        };
        let (tgid, ticks) = own_process();
        let mut done = 0;
        for g in generations(root)
            .into_iter()
            .filter(|g| Some(g.as_path()) != self.own.as_deref())
        {
            if parse_generation(&g).is_none_or(|p| p.abi != abi_version()) {
                continue;
            }
            // Without links its programs act on nothing (a start cut short): there is
            // nothing to be exempt from, and the retire after this start removes it.
            if std::fs::read_dir(g.join("links")).map_or(true, |mut l| l.next().is_none()) {
                continue;
            }
            let path = g.join("maps").join("vigil_config_map");
            let Some(mut config) = pinned(&g.join("maps"), "vigil_config_map")
                .and_then(|m| Array::<_, ConfigPod>::try_from(m).ok())
            else {
                continue;
            };
            let map_io = |e: aya::maps::MapError| io(&path)(std::io::Error::other(e.to_string()));
            let ConfigPod(mut c) = config.get(&0, 0).map_err(map_io)?;
            c.successor_tgid = tgid;
            c.successor_start_ticks = ticks;
            config.set(0, ConfigPod(c), 0).map_err(map_io)?;
            done += 1;
        }
        Ok(done)
    }

    /// Retires every other generation in the directory, after this agent's programs are
    /// attached: detaches its links, counts what its programs wrote that no agent read, and
    /// removes it.
    pub fn retire_others(&self) -> Vec<Result<Retired, PinError>> {
        // An agent that does not persist leaves what another pinned alone: it is not its
        // successor, and the other's next restart would otherwise find nothing to hand over.
        let (Some(root), Some(_)) = (&self.root, &self.own) else {
            return Vec::new();
        };
        generations(root)
            .into_iter()
            .filter(|g| Some(g.as_path()) != self.own.as_deref())
            .map(|g| retire(&g))
            .collect()
    }
}

/// Removes every generation in `root` and the directory itself: `vigil agent --cleanup`.
/// Returns what each left unread.
pub fn cleanup(root: &Path) -> Result<Vec<Result<Retired, PinError>>, PinError> {
    match std::fs::symlink_metadata(root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(root)(e)),
        Ok(_) => check_dir(root)?,
    }
    let retired = generations(root).iter().map(|g| retire(g)).collect();
    std::fs::remove_dir(root).map_err(io(root))?;
    Ok(retired)
}

/// Refuses a pin directory that is not a real directory on bpffs that root alone can write.
fn check_dir(root: &Path) -> Result<(), PinError> {
    let meta = std::fs::symlink_metadata(root).map_err(io(root))?;
    let unsafe_dir = |reason: String, fix| PinError::Unsafe {
        path: root.to_path_buf(),
        reason,
        fix,
    };
    if !meta.file_type().is_dir() {
        return Err(unsafe_dir(
            "is not a directory (a symbolic link is not followed)".into(),
            "remove it, or choose another --bpf-dir",
        ));
    }
    if meta.uid() != 0 || meta.permissions().mode() & 0o022 != 0 {
        return Err(unsafe_dir(
            format!(
                "is owned by uid {} with mode {:o}: others could plant pins the agent would adopt",
                meta.uid(),
                meta.permissions().mode() & 0o7777
            ),
            "chown root and chmod go-w it, or remove it",
        ));
    }
    if fs_magic(root).map_err(io(root))? != BPF_FS_MAGIC {
        return Err(unsafe_dir(
            "is not on a BPF file system".into(),
            "choose a --bpf-dir under /sys/fs/bpf (the agent mounts bpffs there when it is missing)",
        ));
    }
    Ok(())
}

/// The type of the file system `path` is on (statfs(2)'s `f_type`).
pub(crate) fn fs_magic(path: &Path) -> std::io::Result<i64> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: statfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut fs) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fs.f_type as i64)
}

/// The generation directories in `root`, oldest first.
fn generations(root: &Path) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("gen-"))
        })
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    all.sort_by_key(|p| generation_time(p));
    all
}

/// `gen-<abi>-<boot ns>`: the version and the time it was made.
/// A generation's name: `gen-<abi>-<boot ns>-<owner pid>-<owner start ticks>`.
struct Generation {
    abi: u32,
    time: u64,
    owner: (u32, u64),
}

fn parse_generation(dir: &Path) -> Option<Generation> {
    let name = dir.file_name()?.to_str()?;
    let mut parts = name.strip_prefix("gen-")?.split('-');
    let mut next = || parts.next()?.parse::<u64>().ok();
    Some(Generation {
        abi: u32::try_from(next()?).ok()?,
        time: next()?,
        owner: (u32::try_from(next()?).ok()?, next()?),
    })
}

fn generation_time(dir: &Path) -> u64 {
    parse_generation(dir).map(|g| g.time).unwrap_or(0)
}

/// This process's pid and start time in clock ticks since boot.
fn own_process() -> (u32, u64) {
    let pid = std::process::id();
    (pid, start_ticks(pid).unwrap_or(0))
}

fn start_ticks(pid: u32) -> Option<u64> {
    procfs::process::Process::new(pid as i32)
        .ok()?
        .stat()
        .ok()
        .map(|s| s.starttime)
}

/// Whether the agent that made a generation still runs (the same pid, started at the same
/// tick: not a process that got its pid since).
fn owner_runs((pid, ticks): (u32, u64)) -> bool {
    pid != 0 && start_ticks(pid) == Some(ticks)
}

/// Detaches a generation's links, counts what it left and removes it.
fn retire(dir: &Path) -> Result<Retired, PinError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let generation = parse_generation(dir);
    let abi = generation.as_ref().map(|g| g.abi).unwrap_or(0);
    // An agent still running (an upgrade's overlap) reads its own ring and reports its own
    // drops; once its pins are gone it stops without touching its links.
    let running = generation.is_some_and(|g| owner_runs(g.owner));
    // Its links first, so its programs stop writing before their counters are read.
    let mut links = 0;
    for entry in std::fs::read_dir(dir.join("links")).into_iter().flatten() {
        let path = entry.map_err(io(dir))?.path();
        std::fs::remove_file(&path).map_err(io(&path))?;
        links += 1;
    }
    let maps = dir.join("maps");
    if running {
        remove_generation(dir)?;
        return Ok(Retired {
            generation: name,
            abi,
            links,
            running: true,
            ..Default::default()
        });
    }
    let unread = pinned(&maps, "vigil_events")
        .and_then(|m| RingBuf::try_from(m).ok())
        .map(|mut ring| {
            let mut n = 0u64;
            while ring.next().is_some() {
                n += 1;
            }
            n
        })
        .unwrap_or(0);
    let total: u64 = pinned(&maps, "vigil_drops")
        .and_then(|m| PerCpuArray::<_, u64>::try_from(m).ok())
        .map(|drops| {
            (0..abi::DROP_SLOTS as u32)
                .filter_map(|i| drops.get(&i, 0).ok())
                .map(|per_cpu| per_cpu.iter().sum::<u64>())
                .sum()
        })
        .unwrap_or(0);
    // What its agent had reported is in its config, when the layout is ours.
    let seen = (abi == abi_version())
        .then(|| pinned(&maps, "vigil_config_map"))
        .flatten()
        .and_then(|m| Array::<_, ConfigPod>::try_from(m).ok())
        .and_then(|a| a.get(&0, 0).ok())
        .map(|ConfigPod(c)| c.drops_seen)
        .unwrap_or(0);
    remove_generation(dir)?;
    Ok(Retired {
        generation: name,
        abi,
        links,
        running: false,
        unread,
        dropped: total.saturating_sub(seen),
    })
}

/// A map of a retired generation, if it has that pin (a generation cut short while it was
/// being made may not).
fn pinned(maps: &Path, name: &str) -> Option<Map> {
    Map::from_map_data(MapData::from_pin(maps.join(name)).ok()?).ok()
}

/// Removes this agent's own generation after a start that failed: nothing of a start that did
/// not finish stays pinned and acting.
pub fn abandon(own: &Path) {
    let _ = remove_generation(own);
}

/// Removes a generation: links (detaching what is still attached), then maps, then the
/// directories.
fn remove_generation(dir: &Path) -> Result<(), PinError> {
    for sub in ["links", "maps"] {
        for entry in std::fs::read_dir(dir.join(sub)).into_iter().flatten() {
            let path = entry.map_err(io(dir))?.path();
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        let _ = std::fs::remove_dir(dir.join(sub));
    }
    std::fs::remove_dir(dir).map_err(io(dir))
}

/// CLOCK_BOOTTIME in nanoseconds: generations sort by it.
fn boot_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[derive(Clone, Copy)]
#[repr(transparent)]
pub(super) struct ConfigPod(pub abi::Config);
// SAFETY: abi::Config is #[repr(C)] plain integers, valid for any bit pattern.
unsafe impl Pod for ConfigPod {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_read_from_the_bytes_the_binary_carries() {
        assert_eq!(abi_version(), 1);
        assert_eq!(&ABI_MARK[..17], b"vigil-pinned-abi=");
    }

    #[test]
    fn generation_names_give_their_version_and_time() {
        let g = parse_generation(Path::new("/x/gen-0001-123456-77-9000")).unwrap();
        assert_eq!((g.abi, g.time, g.owner), (1, 123456, (77, 9000)));
        assert_eq!(
            parse_generation(Path::new("/x/gen-0001-123456")).map(|g| g.abi),
            None
        );
        assert_eq!(
            parse_generation(Path::new("/x/gen-x-1-2-3")).map(|g| g.abi),
            None
        );
        let (pid, ticks) = own_process();
        assert!(owner_runs((pid, ticks)), "this test process runs");
        assert!(
            !owner_runs((pid, ticks + 1)),
            "a pid reused by a later process is not the owner"
        );
        assert!(parse_generation(Path::new("/x/other")).is_none());
    }

    #[test]
    fn a_pin_directory_off_bpffs_or_writable_by_others_is_refused_with_the_fix() {
        let dir = std::env::temp_dir().join(format!("vigil-pins-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        let e = check_dir(&dir).unwrap_err().to_string();
        if unsafe { libc::geteuid() } == 0 {
            assert!(e.contains("is not on a BPF file system"), "{e}");
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("others could plant pins"), "{e}");
        assert!(e.contains("chmod go-w"), "{e}");
        let link = dir.join("link");
        std::os::unix::fs::symlink("/sys/fs/bpf", &link).unwrap();
        let e = check_dir(&link).unwrap_err().to_string();
        assert!(e.contains("a symbolic link is not followed"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
