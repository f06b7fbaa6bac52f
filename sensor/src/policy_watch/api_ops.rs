//! The policy operations of the API: list, add, delete, enable, disable, set the mode. Each
//! goes through the same gate, plan and make-before-break replacement as a policy file, and
//! what it changes is written to the state directory before it answers, so that it holds
//! after a restart.

use std::path::{Path, PathBuf};

use vigil_policy_engine::Mode;

use super::{
    state::{file_safe, Overrides, MAX_NAME},
    Outcome, PolicyManager, Tracked,
};
use crate::{agent::log, loader::LoadedObject, policies::HookReport};

/// One policy as the API shows it.
#[derive(Debug, Clone)]
pub struct PolicyView {
    /// Its name (empty for a file refused before its name could be read).
    pub name: String,
    /// A file's path, `api`, or a cluster object's source.
    pub source: String,
    /// `enabled`, `disabled`, `refused` or `not-selected`.
    pub state: &'static str,
    /// Its mode, when it runs.
    pub mode: Option<Mode>,
    /// Each hook and how it attached.
    pub hooks: Vec<HookReport>,
    /// The kernel map entries it holds, in bytes.
    pub kernel_bytes: u64,
    /// Why it was refused.
    pub error: Option<String>,
    /// A namespaced policy's namespace.
    pub namespace: Option<String>,
}

/// Why an operation was not done; the running policies are as they were.
#[derive(Debug, thiserror::Error)]
pub enum PolicyOpError {
    /// The request is wrong: the policy does not validate, or cannot be named so.
    #[error("{0}")]
    Invalid(String),
    /// No policy of that name.
    #[error("no policy is named `{0}` (`vigil policy list` lists them)")]
    NotFound(String),
    /// A policy of that name comes from somewhere the API does not manage.
    #[error("{0}")]
    Elsewhere(String),
    /// The kernel refused it, or attaching failed.
    #[error("{0}")]
    Refused(String),
    /// The state directory could not be written.
    #[error("{0}")]
    State(String),
}

impl PolicyManager {
    /// Every policy source and what became of it, by name.
    pub fn list(&self) -> Vec<PolicyView> {
        let bytes = self.table.kernel_bytes_by_policy();
        let mut all: Vec<PolicyView> = self
            .files
            .iter()
            .map(|(path, t)| self.view_of(path, t, &bytes))
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name).then(a.source.cmp(&b.source)));
        all
    }

    /// Enforces a policy sent as YAML and keeps it in the state directory; a policy of the
    /// same name added through the API before is replaced (the new version runs before the
    /// old one goes).
    pub fn add(
        &mut self,
        sensor: &mut LoadedObject,
        yaml: &str,
    ) -> Result<PolicyView, PolicyOpError> {
        // Prepared once, as the request's text: the file written next holds the same text.
        let checked = self
            .view
            .prepare_text("AddPolicy request", yaml, None, &self.overrides);
        let name = match &checked.prepared {
            Ok(p) => p.name().to_string(),
            Err(e) => {
                self.load_errors += 1;
                return Err(PolicyOpError::Invalid(e.to_string()));
            }
        };
        if !file_safe(&name) {
            return Err(PolicyOpError::Invalid(format!(
                "metadata.name `{name}`: a policy added through the API is named as a Kubernetes object (lower-case letters, digits, `-` and `.`, at most {MAX_NAME}); rename it"
            )));
        }
        let Some(state) = &self.state else {
            return Err(PolicyOpError::State(
                "the agent has no state directory, so a policy added now would not survive a restart: start it with a writable --state-dir".into(),
            ));
        };
        let path = state.policy_path(&name);
        if let Some((other, _)) = self.find(&name).filter(|(p, _)| *p != path) {
            return Err(PolicyOpError::Elsewhere(format!(
                "a policy named `{name}` is already loaded from {}: delete it there, or add this one under another name",
                other.display()
            )));
        }
        let before = std::fs::read_to_string(&path).ok();
        state
            .save_policy(&name, yaml)
            .map_err(|e| PolicyOpError::State(e.to_string()))?;
        let file = super::PreparedFile {
            stamp: super::stamp(&path),
            path: path.clone(),
            prepared: checked.prepared,
        };
        match self.apply(sensor, file, true) {
            Ok(_) => Ok(self.view_named(&name)),
            Err(reason) => {
                // The policy file says what runs: back to the version that runs, if any.
                let undo = match (&self.state, before) {
                    (Some(s), Some(text)) => s.save_policy(&name, &text).map(|_| ()),
                    (Some(s), None) => s.remove_policy(&name),
                    (None, _) => Ok(()),
                };
                if let Err(e) = undo {
                    log(format!(
                        "policy {name}: cannot restore its file after the refusal: {e}"
                    ));
                }
                if self.files.get(&path).is_some_and(|t| t.policy.is_none()) {
                    self.files.remove(&path);
                }
                Err(PolicyOpError::Refused(reason))
            }
        }
    }

    /// Removes a policy added through the API, and what the API set for it.
    pub fn delete(&mut self, sensor: &mut LoadedObject, name: &str) -> Result<(), PolicyOpError> {
        let (path, _) = self
            .find(name)
            .ok_or_else(|| PolicyOpError::NotFound(name.to_string()))?;
        let Some(state) = self
            .state
            .as_ref()
            .filter(|s| path.starts_with(s.policies_dir()))
        else {
            return Err(PolicyOpError::Elsewhere(format!(
                "policy `{name}` comes from {}, not the API: remove it there (or `vigil policy disable {name}`)",
                path.display()
            )));
        };
        state
            .remove_policy(name)
            .map_err(|e| PolicyOpError::State(e.to_string()))?;
        let mut overrides = self.overrides.clone();
        overrides.disabled.remove(name);
        overrides.modes.remove(name);
        self.save(overrides)?;
        if let Some(Tracked {
            policy: Some(running),
            ..
        }) = self.files.remove(&path)
        {
            match self.table.uninstall(&running) {
                Ok(links) => links.into_iter().for_each(|l| sensor.detach_hook(l)),
                Err(e) => log(format!("policy {running}: removing it: {e}")),
            }
        }
        log(format!("policy {name} removed (deleted through the API)"));
        self.release_file_open(sensor);
        Ok(())
    }

    /// Enforces a disabled policy again, or stops enforcing one, keeping it.
    pub fn set_enabled(
        &mut self,
        sensor: &mut LoadedObject,
        name: &str,
        enabled: bool,
    ) -> Result<PolicyView, PolicyOpError> {
        let (path, _) = self
            .find(name)
            .ok_or_else(|| PolicyOpError::NotFound(name.to_string()))?;
        let mut overrides = self.overrides.clone();
        if enabled {
            overrides.disabled.remove(name);
        } else {
            overrides.disabled.insert(name.to_string());
        }
        self.save(overrides)?;
        self.reapply(sensor, &path)?;
        Ok(self.view_named(name))
    }

    /// Switches a policy between enforcing and reporting what it would have done; the
    /// policy in its new mode runs before the old one goes.
    pub fn set_mode(
        &mut self,
        sensor: &mut LoadedObject,
        name: &str,
        mode: Mode,
    ) -> Result<PolicyView, PolicyOpError> {
        let (path, _) = self
            .find(name)
            .ok_or_else(|| PolicyOpError::NotFound(name.to_string()))?;
        let mut overrides = self.overrides.clone();
        let word = match mode {
            Mode::Enforce => "enforce",
            Mode::Monitor => "monitor",
        };
        overrides.modes.insert(name.to_string(), word.to_string());
        self.save(overrides)?;
        self.reapply(sensor, &path)?;
        Ok(self.view_named(name))
    }

    /// Writes the overrides, then makes them this agent's.
    fn save(&mut self, overrides: Overrides) -> Result<(), PolicyOpError> {
        if let Some(s) = &self.state {
            s.save_overrides(&overrides)
                .map_err(|e| PolicyOpError::State(e.to_string()))?;
        }
        self.overrides = overrides;
        Ok(())
    }

    /// Prepares and applies a source again (after its overrides changed).
    fn reapply(&mut self, sensor: &mut LoadedObject, path: &Path) -> Result<(), PolicyOpError> {
        let object = self.files.get(path).and_then(|t| t.object.clone());
        let result = match object {
            Some((text, namespace)) => {
                let source = path.display().to_string();
                self.apply_object(sensor, &source, &text, namespace.as_deref())
            }
            None => {
                let file = self.view.prepare(path, &self.overrides);
                self.apply(sensor, file, true)
            }
        };
        self.release_file_open(sensor);
        result.map(|_| ()).map_err(PolicyOpError::Refused)
    }

    /// The source of the policy `name`, running or not.
    fn find(&self, name: &str) -> Option<(PathBuf, &Tracked)> {
        self.files
            .iter()
            .find(|(_, t)| {
                t.policy.as_deref() == Some(name)
                    || matches!(&t.outcome, Outcome::Disabled { name: n } | Outcome::NotSelected { name: n, .. } if n == name)
            })
            .map(|(p, t)| (p.clone(), t))
    }

    fn view_named(&self, name: &str) -> PolicyView {
        match self.find(name) {
            Some((path, t)) => self.view_of(&path, t, &self.table.kernel_bytes_by_policy()),
            None => PolicyView {
                name: name.to_string(),
                source: String::new(),
                state: "refused",
                mode: None,
                hooks: Vec::new(),
                kernel_bytes: 0,
                error: None,
                namespace: None,
            },
        }
    }

    fn view_of(
        &self,
        path: &Path,
        t: &Tracked,
        bytes: &std::collections::HashMap<String, u64>,
    ) -> PolicyView {
        let from_api = self
            .state
            .as_ref()
            .is_some_and(|s| path.starts_with(s.policies_dir()));
        let source = if from_api {
            "api".to_string()
        } else {
            path.display().to_string()
        };
        let running = t.policy.clone().unwrap_or_default();
        let kernel_bytes = t
            .policy
            .as_deref()
            .and_then(|n| bytes.get(n).copied())
            .unwrap_or(0);
        let (name, state, mode, hooks, error, namespace) = match &t.outcome {
            Outcome::Loaded {
                mode,
                report,
                namespace,
            } => (
                running,
                "enabled",
                Some(*mode),
                report.clone(),
                None,
                namespace.clone(),
            ),
            Outcome::Disabled { name } => (name.clone(), "disabled", None, Vec::new(), None, None),
            Outcome::NotSelected { name, said } => (
                name.clone(),
                "not-selected",
                None,
                Vec::new(),
                Some(said.clone()),
                None,
            ),
            Outcome::Refused { reason } => (
                running,
                "refused",
                None,
                Vec::new(),
                Some(reason.clone()),
                None,
            ),
        };
        PolicyView {
            name,
            source,
            state,
            mode,
            hooks,
            kernel_bytes,
            error,
            namespace,
        }
    }
}
