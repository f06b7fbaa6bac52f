//! The rule files under the paths given with `--sigma`, found the same way by the loader and
//! by the agent's once-a-second check for changes.
//!
//! A symbolic link to a directory is never followed: two links back up a tree (`a -> ..`)
//! make a following walk take 2^n paths at depth n, on the agent's only thread, every second.
//! A link to a rule file is followed (Kubernetes mounts a ConfigMap's files as links). The walk
//! also stops at [`MAX_WALK_DEPTH`] directories down and after [`MAX_WALK_ENTRIES`] entries,
//! and says what it skipped.

use std::path::{Path, PathBuf};

use super::SigmaLoadError;

/// Most directories below a rule path the walk enters.
pub const MAX_WALK_DEPTH: usize = 16;
/// Most directory entries the walk reads under one rule path.
pub const MAX_WALK_ENTRIES: usize = 10_000;

fn is_rule_name(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml"))
}

/// Rule files under `paths` (a path that is a file is a rule file itself), each path's in a
/// stable order, and what was skipped with the reason. The paths themselves are followed if
/// they are links: the administrator named them.
pub fn rule_files(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<SigmaLoadError>) {
    let mut w = Walk::default();
    for path in paths {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                w.entries = 0;
                w.dir(path, 0);
            }
            Ok(_) => w.files.push(path.clone()),
            Err(e) => w.skip(path, format!("cannot read: {e}")),
        }
    }
    (w.files, w.skipped)
}

#[derive(Default)]
struct Walk {
    files: Vec<PathBuf>,
    skipped: Vec<SigmaLoadError>,
    /// Entries read under the current rule path.
    entries: usize,
}

impl Walk {
    fn skip(&mut self, path: &Path, reason: String) {
        self.skipped.push(SigmaLoadError {
            file: path.display().to_string(),
            at: None,
            reason,
        });
    }

    fn dir(&mut self, dir: &Path, depth: usize) {
        let list = match std::fs::read_dir(dir) {
            Ok(l) => l,
            Err(e) => return self.skip(dir, format!("cannot read: {e}")),
        };
        let mut entries = Vec::new();
        for e in list {
            if self.entries == MAX_WALK_ENTRIES {
                return self.skip(
                    dir,
                    format!(
                        "not read past {MAX_WALK_ENTRIES} directory entries under one rule \
                         path: split the rules into several directories"
                    ),
                );
            }
            self.entries += 1;
            let Ok(e) = e else { continue };
            // The entry's own type: a link is reported as a link, not as what it points to.
            if let Ok(t) = e.file_type() {
                entries.push((e.path(), t));
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (p, t) in entries {
            if t.is_dir() {
                if depth + 1 > MAX_WALK_DEPTH {
                    self.skip(
                        &p,
                        format!(
                            "not read: deeper than {MAX_WALK_DEPTH} directories below the rule \
                             path; move its rules higher up"
                        ),
                    );
                } else {
                    self.dir(&p, depth + 1);
                }
            } else if t.is_symlink() {
                match std::fs::metadata(&p) {
                    Ok(m) if m.is_dir() => self.skip(
                        &p,
                        "not followed: a symbolic link to a directory (a link loop would make \
                         every rescan walk without end); name the directory itself with --sigma-dir"
                            .into(),
                    ),
                    Ok(_) if is_rule_name(&p) => self.files.push(p),
                    Err(e) if is_rule_name(&p) => self.skip(&p, format!("cannot read: {e}")),
                    _ => {}
                }
            } else if t.is_file() && is_rule_name(&p) {
                self.files.push(p);
            }
        }
    }
}
