//! Input files (policies, Sigma rules, the configuration, secrets), read as sshd's StrictModes
//! reads its own.

use std::{io::Read, os::fd::AsRawFd, path::Path};

use crate::{fstat, split, FsError, TrustedDir};

/// Reads an input file (a policy, a Sigma rule, the configuration) as sshd's StrictModes
/// accepts one: links are followed (Kubernetes mounts ConfigMaps as links), but the file they
/// reach must be a regular file owned by root (or the caller), not writable by group or
/// others, in a [`TrustedDir`]; and at most `limit` bytes, checked before the content is read.
pub fn read_trusted(path: &Path, limit: u64) -> Result<String, FsError> {
    let real = std::fs::canonicalize(path).map_err(|source| FsError::Io {
        path: path.to_path_buf(),
        op: "read",
        source,
    })?;
    let (dir, name) = split(&real)?;
    let file = TrustedDir::open(&dir)
        .and_then(|d| d.open_read(&name))
        .map_err(|e| relabel(e, path, &real))?;
    let size = fstat(file.as_raw_fd(), path)?.st_size as u64;
    if size > limit {
        return Err(FsError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit,
        });
    }
    let mut buf = Vec::with_capacity(size as usize);
    // The file may grow after the stat: never read more than the limit and one byte.
    file.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|source| FsError::Io {
            path: path.to_path_buf(),
            op: "read",
            source,
        })?;
    if buf.len() as u64 > limit {
        return Err(FsError::TooLarge {
            path: path.to_path_buf(),
            size: buf.len() as u64,
            limit,
        });
    }
    String::from_utf8(buf).map_err(|_| FsError::NotUtf8 {
        path: path.to_path_buf(),
    })
}

/// Errors about the file itself name it as the user wrote it; about a directory on the way,
/// the directory.
fn relabel(e: FsError, given: &Path, real: &Path) -> FsError {
    match e {
        FsError::ForeignOwner { path, uid } if path == real => FsError::ForeignOwner {
            path: given.to_path_buf(),
            uid,
        },
        FsError::Writable { path, mode } if path == real => FsError::Writable {
            path: given.to_path_buf(),
            mode,
        },
        other => other,
    }
}
