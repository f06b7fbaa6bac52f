//! The gate in front of every YAML parser vigil runs on a file it is given: policies, Sigma
//! rules and the agent's configuration.
//!
//! The parsers behind it are not built for hostile input: [`crate::locate`] records every node,
//! yaml-rust2's document loader recurses once per nesting level (a file of 100,000 `- ` nested
//! levels overflows the stack), and an alias repeats its anchor's whole subtree wherever it is
//! used, so a few kilobytes of nested aliases expand to gigabytes ("billion laughs"). The gate
//! reads at most [`Limits::bytes`] (and one more to notice a larger file) through
//! [`vigil_safe_fs::read_trusted`], which also refuses a file others can write, then walks the
//! parser's events one at a time, with nothing kept per node, and stops at the first nesting
//! level past [`Limits::depth`], the first node past [`Limits::nodes`], the first alias or, in
//! a Sigma rule, the first tag ([`Limits::tags`]).
//! Only then does a parser that builds something see the text.

use std::path::Path;

use yaml_rust2::{
    parser::{Event, Parser},
    scanner::Marker,
};

use crate::error::{PolicyError, PolicyErrors};

/// How much of a YAML file vigil accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// What the file is, for messages (`policy`, `Sigma rule`, `configuration`).
    pub kind: &'static str,
    /// Most bytes.
    pub bytes: u64,
    /// Most sequences and mappings inside each other.
    pub depth: usize,
    /// Most nodes (scalars, sequences and mappings).
    pub nodes: usize,
    /// Whether tags are read (`!file PATH`, a secret in the configuration). A Sigma rule's are
    /// not: serde_yaml keeps a tagged value apart where sigma-rust's parser reads it as plain,
    /// so a tagged `condition` would reach sigma-rust past vigil's checks on it.
    pub tags: bool,
}

impl Limits {
    /// TracingPolicies: the deepest field vigil reads is 7 levels down, and one filter may list
    /// 65,536 values, which fits (2.3 MB, 43 MiB of peak RSS in `policy lint`); serde_yaml holds
    /// every event of the document at once, so the node count is what bounds memory.
    pub const POLICY: Limits = Limits {
        kind: "policy",
        bytes: 4 << 20,
        depth: 64,
        nodes: 100_000,
        tags: true,
    };
    /// Sigma rules: a few kilobytes each in SigmaHQ's repository.
    pub const SIGMA: Limits = Limits {
        kind: "Sigma rule",
        bytes: 1 << 20,
        depth: 64,
        nodes: 50_000,
        tags: false,
    };
    /// The agent's configuration.
    pub const CONFIG: Limits = Limits {
        kind: "configuration",
        bytes: 1 << 20,
        depth: 64,
        nodes: 50_000,
        tags: true,
    };
}

/// Why an input file was not read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file itself: missing, writable by others, owned by another user, too large, not text.
    #[error(transparent)]
    File(#[from] vigil_safe_fs::FsError),
    /// Its content: past a limit of the gate, or (for policies) every problem validation found.
    #[error("{0}")]
    Invalid(PolicyErrors),
}

impl InputError {
    /// What is wrong, without the file name in front (for messages that print it already).
    pub fn detail(&self, file: &str) -> String {
        let all = self.to_string();
        match all.strip_prefix(file).and_then(|r| r.strip_prefix(':')) {
            Some(rest) => rest.trim_start().to_string(),
            None => all,
        }
    }
}

/// Reads `path` for a parser: trusted as sshd's StrictModes would (see
/// [`vigil_safe_fs::read_trusted`]), at most `limits.bytes` read, then [`check_yaml`].
pub fn read_yaml(path: &Path, limits: &Limits) -> Result<String, InputError> {
    let text = vigil_safe_fs::read_trusted(path, limits.bytes)?;
    check_yaml(&path.display().to_string(), &text, limits)
        .map_err(|e| InputError::Invalid(PolicyErrors(vec![e])))?;
    Ok(text)
}

/// Checks `text` against `limits` without building anything from it: its size, how deep
/// sequences and mappings nest, how many nodes it has, that it has no alias (nor a tag, where
/// `limits` read none), and that it is
/// YAML at all (a parser after the gate must not go where the gate could not).
pub fn check_yaml(file: &str, text: &str, limits: &Limits) -> Result<(), PolicyError> {
    let refuse = |mark: Option<Marker>, reason: String, fix: String| {
        let (line, column) = mark.map(|m| (m.line(), m.col() + 1)).unwrap_or((1, 1));
        Err(PolicyError {
            file: file.to_string(),
            line,
            column,
            path: "(document)".into(),
            reason,
            fix,
        })
    };
    if text.len() as u64 > limits.bytes {
        return refuse(
            None,
            format!(
                "the {} is {} bytes, more than the {} bytes vigil reads",
                limits.kind,
                text.len(),
                limits.bytes
            ),
            format!(
                "split it into several files of at most {} bytes",
                limits.bytes
            ),
        );
    }
    let mut parser = Parser::new_from_str(text);
    let (mut depth, mut nodes) = (0usize, 0usize);
    loop {
        let (event, mark) = match parser.next_token() {
            Ok(next) => next,
            // The parsers after the gate must not see what it could not check: libyaml, for
            // one, takes seconds over 100,000 nested brackets that yaml-rust2 stops at 256.
            Err(e) if e.info() == "recursion limit exceeded" => {
                return refuse(Some(*e.marker()), too_deep(limits), fix_depth(limits));
            }
            Err(e) => {
                return refuse(
                    Some(*e.marker()),
                    format!("YAML syntax error: {}", e.info()),
                    "check the quoting and indentation on this line and the lines above it".into(),
                );
            }
        };
        match event {
            Event::StreamEnd => return Ok(()),
            Event::Alias(_) => {
                return refuse(
                    Some(mark),
                    format!(
                        "YAML alias `{}`: vigil does not expand aliases (a few nested aliases \
                         expand a small file to gigabytes)",
                        alias_at(text, mark)
                    ),
                    "write the value out where the alias is, and remove its `&` anchor".into(),
                );
            }
            Event::Scalar(_, _, _, Some(tag))
            | Event::SequenceStart(_, Some(tag))
            | Event::MappingStart(_, Some(tag))
                if !limits.tags =>
            {
                return refuse(
                    Some(mark),
                    format!(
                        "YAML tag `{}{}`: a {} has no tags (the parsers after this check read a \
                         tagged value differently: one keeps the tag, another drops it)",
                        // The core schema's handle as it is written.
                        match tag.handle.as_str() {
                            "tag:yaml.org,2002:" => "!!",
                            handle => handle,
                        },
                        tag.suffix,
                        limits.kind
                    ),
                    "remove the tag and write the value plainly".into(),
                );
            }
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                if depth > limits.depth {
                    return refuse(Some(mark), too_deep(limits), fix_depth(limits));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => {
                depth = depth.saturating_sub(1);
                continue;
            }
            Event::Scalar(..) => {}
            _ => continue,
        }
        nodes += 1;
        if nodes > limits.nodes {
            return refuse(
                Some(mark),
                format!(
                    "the {} has more than {} values, lists and mappings",
                    limits.kind, limits.nodes
                ),
                "split it into several files".into(),
            );
        }
    }
}

fn too_deep(limits: &Limits) -> String {
    format!(
        "lists and mappings nest more than {} levels deep",
        limits.depth
    )
}

fn fix_depth(limits: &Limits) -> String {
    format!(
        "a {} needs far fewer levels: check the indentation and brackets",
        limits.kind
    )
}

/// The alias as written at `mark` (`*name`), for the message.
fn alias_at(text: &str, mark: Marker) -> String {
    let line = text
        .lines()
        .nth(mark.line().saturating_sub(1))
        .unwrap_or("");
    let name: String = line
        .chars()
        .skip(mark.col())
        .take_while(|c| !c.is_whitespace() && !matches!(c, ',' | '[' | ']' | '{' | '}'))
        .take(64)
        .collect();
    if name.starts_with('*') {
        name
    } else {
        "*".into()
    }
}

#[cfg(test)]
mod tests;
