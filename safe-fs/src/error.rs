//! What refusing a path says: the path, what is wrong with it, and the fix.

use std::path::{Path, PathBuf};

/// Why a path was refused.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// A symbolic link where vigil does not follow one.
    #[error("{}: is a symbolic link; vigil does not follow links where root writes or reads its own state (a planted link redirects root's writes): remove it, or use the real path", .path.display())]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// Something other than a regular file or a directory.
    #[error("{}: is {kind}, not a {expected}: remove it, or choose another path", .path.display())]
    WrongType {
        /// The path.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
        /// What it should be.
        expected: &'static str,
    },
    /// Owned by a user other than root (and the caller).
    #[error("{}: is owned by uid {uid}, not root: its owner can replace or redirect it; `chown root {}` or choose a path only root can write", .path.display(), .path.display())]
    ForeignOwner {
        /// The path.
        path: PathBuf,
        /// Its owner.
        uid: u32,
    },
    /// Writable by group or others (and not a sticky directory).
    #[error("{}: is writable by group or others (mode {mode:04o}): anyone who can write it decides what vigil reads or where it writes; `chmod go-w {}`", .path.display(), .path.display())]
    Writable {
        /// The path.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A directory others may create names in (sticky and world-writable, as `/tmp`), where a
    /// file of vigil's would be.
    #[error("{}: others may create files in this directory (mode {mode:04o}), so another user can take or plant the names vigil writes (an export file, its rotated backups): use a directory only root can write, such as /var/log/vigil", .path.display())]
    SharedDir {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file with other hard links: appending to it writes to another name too.
    #[error("{}: has {links} hard links: appending to it would write to another file as well; remove it and let vigil create it", .path.display())]
    HardLinked {
        /// The path.
        path: PathBuf,
        /// Its link count.
        links: u64,
    },
    /// A file that was to be created new already exists.
    #[error("{}: already exists where vigil creates a new file: remove it", .path.display())]
    Exists {
        /// The path.
        path: PathBuf,
    },
    /// Larger than the limit for its kind of input.
    #[error("{}: is {size} bytes, more than the {limit} bytes vigil reads from such a file: split it or shorten it", .path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size (at least).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Not UTF-8 text.
    #[error("{}: is not UTF-8 text", .path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
    /// A name that is not a single path component.
    #[error("{}: `{name}` is not a plain file name (empty, `.`, `..`, or containing `/` or NUL)", .dir.display())]
    BadName {
        /// The directory.
        dir: PathBuf,
        /// The name.
        name: String,
    },
    /// A system call failed.
    #[error("{}: cannot {op}: {source}", .path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

impl FsError {
    /// Whether the path does not exist (a failed call that said `ENOENT`).
    pub fn is_not_found(&self) -> bool {
        matches!(self, FsError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }

    pub(crate) fn io(path: &Path, op: &'static str) -> FsError {
        FsError::Io {
            path: path.to_path_buf(),
            op,
            source: std::io::Error::last_os_error(),
        }
    }
}

impl From<FsError> for std::io::Error {
    fn from(e: FsError) -> Self {
        let kind = match &e {
            FsError::Io { source, .. } => source.kind(),
            FsError::Exists { .. } => std::io::ErrorKind::AlreadyExists,
            FsError::TooLarge { .. } | FsError::NotUtf8 { .. } => std::io::ErrorKind::InvalidData,
            FsError::BadName { .. } => std::io::ErrorKind::InvalidInput,
            _ => std::io::ErrorKind::PermissionDenied,
        };
        std::io::Error::new(kind, e)
    }
}
