//! What the API changed about policies, kept in the agent's state directory so that it is back
//! after a restart before the agent reports ready: the policies added through the API (one
//! YAML file each in `policies/`, read like a `--policy-dir`), and the policies disabled or
//! switched to another mode (`policy-state.json`, by policy name, whatever their source).
//!
//! Everything is written through `vigil-safe-fs`: a state directory another user can write,
//! or a planted symbolic link in it, is refused, never followed.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use vigil_policy_engine::Mode;
use vigil_safe_fs::TrustedDir;

/// Where the state goes when nothing else is configured.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/vigil";

/// The state file of disabled policies and modes.
const STATE_FILE: &str = "policy-state.json";
/// The biggest state file read (a thousand policies' overrides take a few tens of KiB).
const STATE_LIMIT: u64 = 4 << 20;

/// Modes and disabled policies set through the API, by policy name.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// Policies not enforced.
    #[serde(default)]
    pub disabled: BTreeSet<String>,
    /// Policies in another mode than their text says: `enforce` or `monitor`.
    #[serde(default)]
    pub modes: BTreeMap<String, String>,
}

impl Overrides {
    /// The mode set for the policy `name`, if any.
    pub fn mode(&self, name: &str) -> Option<Mode> {
        match self.modes.get(name).map(String::as_str) {
            Some("enforce") => Some(Mode::Enforce),
            Some("monitor") => Some(Mode::Monitor),
            _ => None,
        }
    }
}

/// The agent's state directory, for policies.
pub struct PolicyState {
    root: TrustedDir,
    policies: TrustedDir,
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The directory or a file in it.
    #[error(transparent)]
    Fs(#[from] vigil_safe_fs::FsError),
    /// A write failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The state file is not what this agent writes.
    #[error("{path}: {reason}; fix or remove it (it holds only the policies disabled and modes set through the API)")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl PolicyState {
    /// Opens (creating it, 0700, when missing) the state directory `dir` and its `policies/`.
    pub fn open(dir: &Path) -> Result<PolicyState, StateError> {
        let root = TrustedDir::create(dir)?;
        let policies = root.sub_dir("policies", true)?;
        Ok(PolicyState { root, policies })
    }

    /// The directory of the policies added through the API.
    pub fn policies_dir(&self) -> &Path {
        self.policies.path()
    }

    /// The path the policy `name` added through the API is kept at.
    pub fn policy_path(&self, name: &str) -> PathBuf {
        self.policies.join(&format!("{name}.yaml"))
    }

    /// Reads the overrides (none when the file is not there).
    pub fn overrides(&self) -> Result<Overrides, StateError> {
        let path = self.root.join(STATE_FILE);
        let text = match vigil_safe_fs::read_trusted(&path, STATE_LIMIT) {
            Ok(t) => t,
            Err(e) if e.is_not_found() => return Ok(Overrides::default()),
            Err(e) => return Err(e.into()),
        };
        serde_json::from_str(&text).map_err(|e| StateError::Invalid {
            path,
            reason: e.to_string(),
        })
    }

    /// Writes the overrides.
    pub fn save_overrides(&self, o: &Overrides) -> Result<(), StateError> {
        let text = serde_json::to_vec_pretty(o).map_err(|e| StateError::Invalid {
            path: self.root.join(STATE_FILE),
            reason: e.to_string(),
        })?;
        replace(&self.root, STATE_FILE, &text)
    }

    /// Keeps the text of a policy added through the API, replacing an earlier version.
    pub fn save_policy(&self, name: &str, text: &str) -> Result<PathBuf, StateError> {
        replace(&self.policies, &format!("{name}.yaml"), text.as_bytes())?;
        Ok(self.policy_path(name))
    }

    /// Forgets a policy added through the API.
    pub fn remove_policy(&self, name: &str) -> Result<(), StateError> {
        Ok(self.policies.remove(&format!("{name}.yaml"))?)
    }
}

/// Writes `name` in `dir` whole or not at all: a new file beside it, synced, then renamed over
/// it, so that a crash leaves the old version or the new, never half of one.
fn replace(dir: &TrustedDir, name: &str, bytes: &[u8]) -> Result<(), StateError> {
    let tmp = format!(".{name}.new");
    dir.remove(&tmp)?;
    let mut f = dir.create_new(&tmp, 0o600)?;
    let write = |e| StateError::Write {
        path: dir.join(&tmp),
        source: e,
    };
    f.write_all(bytes).map_err(write)?;
    f.sync_all().map_err(write)?;
    dir.rename(&tmp, name)?;
    Ok(())
}

/// The longest name of a policy added through the API: its file, and the `.<name>.yaml.new`
/// it is written as first, stay within a file name's 255 bytes.
pub const MAX_NAME: usize = 245;

/// Whether `name` can name a file of the state directory: what Kubernetes allows in a
/// policy's name (lower-case letters, digits, `-` and `.`), at most [`MAX_NAME`], not
/// starting with a dot.
pub fn file_safe(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kubernetes_names_become_file_names() {
        assert!(file_safe("deny-shadow.v2"));
        for bad in [
            "",
            "../x",
            "a/b",
            ".hidden",
            "UPPER",
            "a b",
            &"x".repeat(254),
        ] {
            assert!(!file_safe(bad), "{bad}");
        }
    }

    #[test]
    fn an_override_file_with_an_unknown_field_is_refused() {
        let e = serde_json::from_str::<Overrides>(r#"{"disabled":[],"mode":{}}"#);
        assert!(e.is_err());
        let o: Overrides =
            serde_json::from_str(r#"{"disabled":["a"],"modes":{"b":"monitor"}}"#).unwrap();
        assert_eq!(o.mode("b"), Some(Mode::Monitor));
        assert_eq!(o.mode("a"), None);
    }
}
