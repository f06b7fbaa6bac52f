//! Files root can open without being redirected by another local user.
//!
//! vigil runs as root. Every file it writes (export files, rotated backups, spool segments,
//! dead-letter files) sits in a directory a user might also reach, and on a machine where
//! `fs.protected_symlinks` is 0 a symbolic link planted at one of those names makes root append
//! to or truncate whatever the link points at. Every file it trusts (policies, Sigma rules, the
//! configuration) decides what is enforced, so one a user can edit is a way around enforcement.
//!
//! [`TrustedDir`] is a directory opened one component at a time from `/`, never following a
//! symbolic link, each component owned by root (or by the caller's effective uid) and not
//! writable by group or others unless it is sticky (as `/tmp` is; such a directory may be walked
//! through and private directories made in it, but no file of vigil's is written in it, where
//! another user could take or plant its names first). Files are then opened
//! relative to that directory's descriptor with `O_NOFOLLOW`, so no name along the way can be
//! swapped after it was checked: [`TrustedDir::open_append`] creates missing files exclusively
//! and refuses an existing file that is not a regular file, that another user owns, that others
//! may write or that has other hard links; [`TrustedDir::create_new`] only creates.
//! [`read_trusted`] reads an input file as sshd's StrictModes would accept it, with a size limit
//! checked before the content is read. Every refusal is an [`FsError`] whose message names the
//! path and the fix.
//!
//! ```no_run
//! use vigil_safe_fs::TrustedDir;
//! let dir = TrustedDir::create(std::path::Path::new("/var/lib/vigil/spool/splunk"))?;
//! let mut segment = dir.open_append("seg-0000000000000000.jsonl", 0o600)?;
//! # Ok::<(), vigil_safe_fs::FsError>(())
//! ```

#![deny(missing_docs)]

mod error;
mod read;

pub use error::FsError;
pub use read::read_trusted;

use std::{
    ffi::{CStr, CString},
    fs::File,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Component, Path, PathBuf},
};

fn cstr(path: &Path, bytes: &[u8]) -> Result<CString, FsError> {
    CString::new(bytes).map_err(|_| FsError::BadName {
        dir: path.to_path_buf(),
        name: String::from_utf8_lossy(bytes).into_owned(),
    })
}

fn fstat(fd: i32, path: &Path) -> Result<libc::stat, FsError> {
    // SAFETY: `st` is plain data the kernel fills; fd is an open descriptor we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(FsError::io(path, "stat"));
    }
    Ok(st)
}

fn kind_of(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "a regular file",
        libc::S_IFDIR => "a directory",
        libc::S_IFLNK => "a symbolic link",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFSOCK => "a socket",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        _ => "of an unknown type",
    }
}

/// Owned by root or the caller, not writable by group or others (unless a sticky directory).
fn check_owner_and_mode(st: &libc::stat, path: &Path) -> Result<(), FsError> {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    if st.st_uid != 0 && st.st_uid != euid {
        return Err(FsError::ForeignOwner {
            path: path.to_path_buf(),
            uid: st.st_uid,
        });
    }
    let sticky_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR && st.st_mode & libc::S_ISVTX != 0;
    if st.st_mode & 0o022 != 0 && !sticky_dir {
        return Err(FsError::Writable {
            path: path.to_path_buf(),
            mode: st.st_mode & 0o7777,
        });
    }
    Ok(())
}

fn expect_type(
    st: &libc::stat,
    path: &Path,
    want: u32,
    expected: &'static str,
) -> Result<(), FsError> {
    match st.st_mode & libc::S_IFMT {
        m if m == want => Ok(()),
        libc::S_IFLNK => Err(FsError::Symlink {
            path: path.to_path_buf(),
        }),
        m => Err(FsError::WrongType {
            path: path.to_path_buf(),
            kind: kind_of(m),
            expected,
        }),
    }
}

/// Opens `name` under `dir` as a directory without following a link, and checks it; also says
/// whether others may create names in it (a sticky directory such as `/tmp`).
fn open_dir_at(dir: i32, name: &CStr, path: &Path) -> Result<(OwnedFd, bool), FsError> {
    // SAFETY: name is NUL-terminated; the returned descriptor is checked before it is owned.
    let fd = unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            // O_NOFOLLOW|O_DIRECTORY on a link: ELOOP, or ENOTDIR on some kernels.
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => lstat_error(dir, name, path, "a directory"),
            _ => FsError::Io {
                path: path.to_path_buf(),
                op: "open the directory",
                source: err,
            },
        });
    }
    // SAFETY: fd was just returned by openat and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let st = fstat(fd.as_raw_fd(), path)?;
    check_owner_and_mode(&st, path)?;
    Ok((fd, st.st_mode & 0o022 != 0))
}

/// The precise error for a name that is not what was expected.
fn lstat_error(dir: i32, name: &CStr, path: &Path, expected: &'static str) -> FsError {
    match lstat_at(dir, name, path) {
        Ok(Some(st)) => {
            let want = if expected == "a directory" {
                libc::S_IFDIR
            } else {
                libc::S_IFREG
            };
            expect_type(&st, path, want, expected)
                .err()
                .unwrap_or(FsError::Io {
                    path: path.to_path_buf(),
                    op: "open",
                    source: std::io::Error::from_raw_os_error(libc::ELOOP),
                })
        }
        Ok(None) => FsError::Io {
            path: path.to_path_buf(),
            op: "open",
            source: std::io::Error::from_raw_os_error(libc::ENOENT),
        },
        Err(e) => e,
    }
}

fn lstat_at(dir: i32, name: &CStr, path: &Path) -> Result<Option<libc::stat>, FsError> {
    // SAFETY: as in fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.kind() == std::io::ErrorKind::NotFound {
            return Ok(None);
        }
        return Err(FsError::Io {
            path: path.to_path_buf(),
            op: "stat",
            source: err,
        });
    }
    Ok(Some(st))
}

/// A directory every component of which was checked (see the crate docs), held open so that
/// what is opened in it is opened where it was checked.
#[derive(Debug)]
pub struct TrustedDir {
    fd: OwnedFd,
    path: PathBuf,
    /// Others may create names in it (sticky and world-writable, as `/tmp`): it may be walked
    /// through and new private directories made in it, but no file of vigil's lives in it.
    shared: bool,
}

impl TrustedDir {
    /// Opens an existing directory.
    pub fn open(path: &Path) -> Result<TrustedDir, FsError> {
        Self::walk(path, false)
    }

    /// Opens a directory, creating its missing components with mode 0700.
    pub fn create(path: &Path) -> Result<TrustedDir, FsError> {
        Self::walk(path, true)
    }

    fn walk(path: &Path, create: bool) -> Result<TrustedDir, FsError> {
        let absolute = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|source| FsError::Io {
                    path: path.to_path_buf(),
                    op: "resolve the current directory",
                    source,
                })?
                .join(path)
        };
        // The links in a configured path (/var/run -> /run) are the administrator's: resolve
        // the part that exists once, then walk the result refusing every link, so nothing can
        // be swapped in between.
        let (real, rest) = resolve_existing(&absolute)?;
        if !rest.is_empty() && !create {
            return Err(FsError::Io {
                path: absolute,
                op: "open the directory",
                source: std::io::Error::from_raw_os_error(libc::ENOENT),
            });
        }
        let root = c"/";
        let (mut fd, mut shared) = open_dir_at(libc::AT_FDCWD, root, Path::new("/"))?;
        let mut at = PathBuf::from("/");
        for comp in real.components() {
            let Component::Normal(name) = comp else {
                continue;
            };
            at.push(name);
            let c = cstr(&at, name.as_bytes())?;
            (fd, shared) = open_dir_at(fd.as_raw_fd(), &c, &at)?;
        }
        let mut dir = TrustedDir {
            fd,
            path: at,
            shared,
        };
        for name in rest {
            dir = dir.sub_dir(&name, true)?;
        }
        Ok(dir)
    }

    /// The same directory, checked once, for another thread: a second descriptor of it.
    pub fn try_clone(&self) -> Result<TrustedDir, FsError> {
        let fd = self.fd.try_clone().map_err(|source| FsError::Io {
            path: self.path.clone(),
            op: "duplicate the directory's descriptor",
            source,
        })?;
        Ok(TrustedDir {
            fd,
            path: self.path.clone(),
            shared: self.shared,
        })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in it, for messages.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Refuses to write in a directory others may create names in.
    fn own_files(&self) -> Result<(), FsError> {
        if !self.shared {
            return Ok(());
        }
        let st = fstat(self.fd.as_raw_fd(), &self.path)?;
        Err(FsError::SharedDir {
            path: self.path.clone(),
            mode: st.st_mode & 0o7777,
        })
    }

    fn name(&self, name: &str) -> Result<CString, FsError> {
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(FsError::BadName {
                dir: self.path.clone(),
                name: name.to_string(),
            });
        }
        cstr(&self.path, name.as_bytes())
    }

    fn open_at(&self, name: &str, flags: i32, mode: u32) -> Result<Result<File, i32>, FsError> {
        let c = self.name(name)?;
        // O_NONBLOCK: a FIFO planted at the name must not hang the agent in open().
        let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;
        // SAFETY: c is NUL-terminated; a returned descriptor is owned by the File alone.
        let fd = unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags, mode) };
        if fd < 0 {
            return Ok(Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(0)));
        }
        let file = unsafe { File::from_raw_fd(fd) };
        // Regular files ignore O_NONBLOCK, but clear it so the descriptor behaves as usual.
        // SAFETY: fd is open; F_SETFL only changes status flags.
        unsafe { libc::fcntl(fd, libc::F_SETFL, flags & libc::O_APPEND) };
        Ok(Ok(file))
    }

    fn check_file(&self, file: &File, name: &str, writing: bool) -> Result<(), FsError> {
        let path = self.join(name);
        let st = fstat(file.as_raw_fd(), &path)?;
        expect_type(&st, &path, libc::S_IFREG, "regular file")?;
        check_owner_and_mode(&st, &path)?;
        if writing && st.st_nlink > 1 {
            return Err(FsError::HardLinked {
                path,
                links: st.st_nlink,
            });
        }
        Ok(())
    }

    fn open_error(&self, name: &str, errno: i32, expected: &'static str) -> FsError {
        let path = self.join(name);
        match errno {
            libc::ELOOP | libc::ENXIO | libc::EISDIR => match self.name(name) {
                Ok(c) => lstat_error(self.fd.as_raw_fd(), &c, &path, expected),
                Err(e) => e,
            },
            libc::EEXIST => FsError::Exists { path },
            _ => FsError::Io {
                path,
                op: "open",
                source: std::io::Error::from_raw_os_error(errno),
            },
        }
    }

    /// Opens `name` for appending; a missing file is created exclusively with `mode`, an
    /// existing one must be a regular file owned by root (or the caller), not writable by group
    /// or others, with no other hard link.
    pub fn open_append(&self, name: &str, mode: u32) -> Result<File, FsError> {
        self.open_or_create(name, libc::O_WRONLY | libc::O_APPEND, mode)
    }

    /// Opens `name` for reading and writing (a file mapped into memory), as
    /// [`TrustedDir::open_append`] opens and creates.
    pub fn open_read_write(&self, name: &str, mode: u32) -> Result<File, FsError> {
        self.open_or_create(name, libc::O_RDWR, mode)
    }

    fn open_or_create(&self, name: &str, access: i32, mode: u32) -> Result<File, FsError> {
        self.own_files()?;
        for _ in 0..2 {
            match self.open_at(name, access, 0)? {
                Ok(f) => {
                    self.check_file(&f, name, true)?;
                    return Ok(f);
                }
                Err(libc::ENOENT) => {}
                Err(e) => return Err(self.open_error(name, e, "regular file")),
            }
            match self.open_at(name, access | libc::O_CREAT | libc::O_EXCL, mode)? {
                Ok(f) => {
                    self.check_file(&f, name, true)?;
                    return Ok(f);
                }
                // Created by someone else in between: check what is there now.
                Err(libc::EEXIST) => continue,
                Err(e) => return Err(self.open_error(name, e, "regular file")),
            }
        }
        Err(FsError::Exists {
            path: self.join(name),
        })
    }

    /// Creates `name`, which must not exist, for writing.
    pub fn create_new(&self, name: &str, mode: u32) -> Result<File, FsError> {
        self.own_files()?;
        match self.open_at(name, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, mode)? {
            Ok(f) => {
                self.check_file(&f, name, true)?;
                Ok(f)
            }
            Err(e) => Err(self.open_error(name, e, "regular file")),
        }
    }

    /// Opens `name` for reading: a regular file owned by root (or the caller), not writable by
    /// group or others.
    pub fn open_read(&self, name: &str) -> Result<File, FsError> {
        match self.open_at(name, libc::O_RDONLY, 0)? {
            Ok(f) => {
                self.check_file(&f, name, false)?;
                Ok(f)
            }
            Err(e) => Err(self.open_error(name, e, "regular file")),
        }
    }

    /// Whether `name` exists (as a trusted regular file): `Ok(false)` when absent, an error
    /// for a link, another kind of file, a foreign owner or a group/other-writable mode.
    pub fn check_entry(&self, name: &str) -> Result<bool, FsError> {
        let c = self.name(name)?;
        let path = self.join(name);
        let Some(st) = lstat_at(self.fd.as_raw_fd(), &c, &path)? else {
            return Ok(false);
        };
        expect_type(&st, &path, libc::S_IFREG, "regular file")?;
        check_owner_and_mode(&st, &path)?;
        Ok(true)
    }

    /// The size of the regular file `name` (not following a link).
    pub fn size(&self, name: &str) -> Result<u64, FsError> {
        let c = self.name(name)?;
        let path = self.join(name);
        match lstat_at(self.fd.as_raw_fd(), &c, &path)? {
            Some(st) => {
                expect_type(&st, &path, libc::S_IFREG, "regular file")?;
                Ok(st.st_size as u64)
            }
            None => Err(FsError::Io {
                path,
                op: "stat",
                source: std::io::Error::from_raw_os_error(libc::ENOENT),
            }),
        }
    }

    /// Renames `from` to `to`, both in this directory (a link at `to` is replaced, not
    /// followed).
    pub fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        self.own_files()?;
        let (f, t) = (self.name(from)?, self.name(to)?);
        let d = self.fd.as_raw_fd();
        // SAFETY: both names are NUL-terminated.
        if unsafe { libc::renameat(d, f.as_ptr(), d, t.as_ptr()) } != 0 {
            return Err(FsError::io(&self.join(from), "rename"));
        }
        Ok(())
    }

    /// Removes `name` (a link is removed, not followed); a missing name is not an error.
    pub fn remove(&self, name: &str) -> Result<(), FsError> {
        self.own_files()?;
        let c = self.name(name)?;
        // SAFETY: c is NUL-terminated.
        if unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) } != 0 {
            let e = FsError::io(&self.join(name), "remove");
            if !e.is_not_found() {
                return Err(e);
            }
        }
        Ok(())
    }

    /// The directory `name` in this one, created 0700 when missing and `create` is set.
    pub fn sub_dir(&self, name: &str, create: bool) -> Result<TrustedDir, FsError> {
        let c = self.name(name)?;
        let path = self.join(name);
        if create {
            // SAFETY: c is NUL-terminated.
            if unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), 0o700) } != 0 {
                let e = FsError::io(&path, "create the directory");
                if !matches!(&e, FsError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists)
                {
                    return Err(e);
                }
            }
        }
        let (fd, shared) = open_dir_at(self.fd.as_raw_fd(), &c, &path)?;
        Ok(TrustedDir { fd, path, shared })
    }

    /// The names in the directory (those that are UTF-8), unsorted.
    pub fn file_names(&self) -> Result<Vec<String>, FsError> {
        // SAFETY: "." is NUL-terminated; the descriptor is handed to fdopendir, which owns it.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c".".as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(FsError::io(&self.path, "list"));
        }
        let dir = unsafe { libc::fdopendir(fd) };
        if dir.is_null() {
            let e = FsError::io(&self.path, "list");
            unsafe { libc::close(fd) };
            return Err(e);
        }
        let mut names = Vec::new();
        loop {
            // SAFETY: dir is a valid DIR*; the entry is read before the next readdir call.
            let ent = unsafe { libc::readdir(dir) };
            if ent.is_null() {
                break;
            }
            let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
            if let Ok(s) = name.to_str() {
                if s != "." && s != ".." {
                    names.push(s.to_string());
                }
            }
        }
        unsafe { libc::closedir(dir) };
        Ok(names)
    }
}

/// The canonical form of the longest existing prefix of `path`, and the names after it.
fn resolve_existing(path: &Path) -> Result<(PathBuf, Vec<String>), FsError> {
    let mut rest = Vec::new();
    let mut p = path.to_path_buf();
    loop {
        match std::fs::canonicalize(&p) {
            Ok(real) => {
                rest.reverse();
                return Ok((real, rest));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let Some(name) = p.file_name() else {
                    return Err(FsError::Io {
                        path: path.to_path_buf(),
                        op: "resolve",
                        source: e,
                    });
                };
                let name = name.to_str().ok_or_else(|| FsError::BadName {
                    dir: p.parent().unwrap_or(Path::new("/")).to_path_buf(),
                    name: name.to_string_lossy().into_owned(),
                })?;
                if name == ".." || name == "." {
                    return Err(FsError::BadName {
                        dir: p.parent().unwrap_or(Path::new("/")).to_path_buf(),
                        name: name.to_string(),
                    });
                }
                rest.push(name.to_string());
                p.pop();
            }
            Err(e) => {
                return Err(FsError::Io {
                    path: p,
                    op: "resolve",
                    source: e,
                })
            }
        }
    }
}

/// Opens `path` for appending in a [`TrustedDir`] (its parent, created 0700 where missing).
pub fn open_append(path: &Path, mode: u32) -> Result<File, FsError> {
    let (dir, name) = split(path)?;
    TrustedDir::create(&dir)?.open_append(&name, mode)
}

fn split(path: &Path) -> Result<(PathBuf, String), FsError> {
    let bad = || FsError::BadName {
        dir: path.parent().unwrap_or(Path::new("/")).to_path_buf(),
        name: path.to_string_lossy().into_owned(),
    };
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(bad)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name.to_string()))
}

#[cfg(test)]
mod tests;
