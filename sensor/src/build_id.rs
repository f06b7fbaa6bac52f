//! The GNU build id of an ELF file (its `.note.gnu.build-id`), for the loader's events: read
//! from the notes its program headers place in the file's first 64 KiB (where linkers put
//! them), every offset and length checked against what was read, so a hostile file yields
//! nothing rather than a wrong id. Cached by path, a bounded number of files.
//!
//! The path is a user's to shape (a directory swapped for a symlink into a FUSE mount whose
//! daemon never answers, or into /dev): files are read on a thread of their own, which the
//! agent waits for a few milliseconds at most, and opened O_PATH (no device is opened) before
//! they are checked to be regular files on a filesystem the kernel serves, then read.

use std::{
    collections::{HashMap, HashSet},
    io::Read,
    path::Path,
    sync::mpsc,
    time::Duration,
};

/// Bytes read from the start of a file.
const HEAD: usize = 64 << 10;
/// Files whose id is kept.
const CACHED: usize = 4096;

/// How long the agent waits for a file's id.
const WAIT: Duration = Duration::from_millis(20);

type Answer = (String, Option<Vec<u8>>);

/// Build ids by path, and the thread that reads them.
#[derive(Default)]
pub struct BuildIds {
    known: HashMap<String, Option<Vec<u8>>>,
    /// Asked, not answered yet (the reader may be stuck on one).
    pending: HashSet<String>,
    reader: Option<(mpsc::Sender<String>, mpsc::Receiver<Answer>)>,
}

impl BuildIds {
    /// The build id of the file at `path`, if it is an ELF file with one and it is read in
    /// time (a late answer is kept for the next event about the file).
    pub fn of(&mut self, path: &str) -> Option<Vec<u8>> {
        self.take_answers();
        if let Some(id) = self.known.get(path) {
            return id.clone();
        }
        if self.pending.len() >= CACHED || !self.pending.insert(path.to_string()) {
            return None;
        }
        let (ask, _) = self.reader.get_or_insert_with(spawn_reader);
        if ask.send(path.to_string()).is_err() {
            return None;
        }
        loop {
            let answer = match &self.reader {
                Some((_, answers)) => answers.recv_timeout(WAIT),
                None => return None,
            };
            let Ok((p, id)) = answer else {
                return None;
            };
            let done = p == path;
            self.keep(p, id);
            if done {
                return self.known.get(path).cloned().flatten();
            }
        }
    }

    fn take_answers(&mut self) {
        let answers: Vec<Answer> = match &self.reader {
            Some((_, rx)) => rx.try_iter().collect(),
            None => return,
        };
        for (p, id) in answers {
            self.keep(p, id);
        }
    }

    fn keep(&mut self, path: String, id: Option<Vec<u8>>) {
        self.pending.remove(&path);
        if self.known.len() >= CACHED {
            self.known.clear();
        }
        self.known.insert(path, id);
    }
}

/// The reading thread: one path at a time, in the order asked.
fn spawn_reader() -> (mpsc::Sender<String>, mpsc::Receiver<Answer>) {
    let (ask, asked) = mpsc::channel::<String>();
    let (answer, answers) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("vigil-build-ids".into())
        .spawn(move || {
            for path in asked {
                let id = read(Path::new(&path));
                if answer.send((path, id)).is_err() {
                    break;
                }
            }
        });
    if spawned.is_err() {
        // No thread: every ask fails and no id is read.
        let (dead, _) = mpsc::channel();
        return (dead, answers);
    }
    (ask, answers)
}

/// A FUSE filesystem's magic (statfs): its reads are answered by a process, which could stall
/// the agent's.
const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

/// The first bytes of the regular file at `path` (never a symlink's target, a device or a FIFO,
/// nor a file a user-space filesystem serves), then its id.
fn read(path: &Path) -> Option<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_PATH: nothing of the file's own is run to open it (a device's open is not called).
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    if !handle.metadata().ok()?.is_file() {
        return None;
    }
    // SAFETY: statfs is plain data; all zeroes is a valid value.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: an open descriptor and a statfs to fill.
    if unsafe { libc::fstatfs(std::os::fd::AsRawFd::as_raw_fd(&handle), &mut fs) } != 0
        || fs.f_type as i64 == FUSE_SUPER_MAGIC
    {
        return None;
    }
    // The checked file itself, whatever its path names by now.
    let fd = std::os::fd::AsRawFd::as_raw_fd(&handle);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(format!("/proc/self/fd/{fd}"))
        .ok()?;
    let mut head = Vec::with_capacity(HEAD);
    file.take(HEAD as u64).read_to_end(&mut head).ok()?;
    parse(&head)
}

fn bytes_at<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}
fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes_at(b, at)?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes_at(b, at)?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes_at(b, at)?))
}

/// The build id in a 64-bit little-endian ELF file's first bytes `b`.
fn parse(b: &[u8]) -> Option<Vec<u8>> {
    // ELF magic, ELFCLASS64, ELFDATA2LSB.
    if b.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let phoff = usize::try_from(u64_at(b, 0x20)?).ok()?;
    let phentsize = u16_at(b, 0x36)? as usize;
    let phnum = u16_at(b, 0x38)? as usize;
    if phentsize < 0x38 {
        return None;
    }
    for i in 0..phnum.min(64) {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(b, ph)? != 4 {
            continue; // not PT_NOTE
        }
        let off = usize::try_from(u64_at(b, ph.checked_add(8)?)?).ok()?;
        let size = usize::try_from(u64_at(b, ph.checked_add(0x20)?)?).ok()?;
        let notes = b.get(off..off.checked_add(size)?)?;
        if let Some(id) = gnu_build_id(notes) {
            return Some(id);
        }
    }
    None
}

/// The NT_GNU_BUILD_ID note among `notes`.
fn gnu_build_id(notes: &[u8]) -> Option<Vec<u8>> {
    let align4 = |n: usize| n.checked_add(3).map(|n| n & !3);
    let mut at = 0;
    while at + 12 <= notes.len() {
        let namesz = u32_at(notes, at)? as usize;
        let descsz = u32_at(notes, at + 4)? as usize;
        let kind = u32_at(notes, at + 8)?;
        let name_at = at + 12;
        let desc_at = name_at.checked_add(align4(namesz)?)?;
        let end = desc_at.checked_add(align4(descsz)?)?;
        if kind == 3 && notes.get(name_at..name_at.checked_add(namesz)?)? == b"GNU\0" {
            return notes
                .get(desc_at..desc_at.checked_add(descsz)?)
                .filter(|d| !d.is_empty() && d.len() <= 64)
                .map(<[u8]>::to_vec);
        }
        at = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_id_of_a_real_binary_matches_what_the_file_command_reads() {
        // The test binary itself: cargo links with a build id.
        let me = std::env::current_exe().unwrap();
        let id = read(&me).expect("a build id");
        assert!(id.len() >= 16, "{id:?}");
        // The section's bytes end with the id (name "GNU\0" before it).
        let bytes = std::fs::read(&me).unwrap();
        assert!(bytes
            .windows(id.len() + 4)
            .any(|w| &w[..4] == b"GNU\0" && w[4..] == id[..]));
    }

    #[test]
    fn hostile_headers_yield_nothing() {
        let mut b = b"\x7fELF\x02\x01".to_vec();
        b.resize(0x40, 0);
        b[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&3u16.to_le_bytes());
        assert_eq!(parse(&b), None);
        assert_eq!(parse(b"not an elf"), None);
        // A note whose name runs past the end.
        assert_eq!(
            gnu_build_id(&[0xff, 0xff, 0xff, 0x7f, 4, 0, 0, 0, 3, 0, 0, 0]),
            None
        );
    }
}
