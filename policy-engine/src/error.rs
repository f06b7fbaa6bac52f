//! Policy errors that tell the author exactly what to change.

use std::fmt;

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {path}: {reason} (fix: {fix})")]
pub struct PolicyError {
    /// The policy file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The field, as `spec.kprobes[0].args[1].type`.
    pub path: String,
    /// What is wrong.
    pub reason: String,
    /// What to do about it.
    pub fix: String,
}

/// Every problem found in one policy file (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

/// At most `max` bytes of `s` for a message, cut where a character starts: values come from
/// the policy's author, and slicing inside a multi-byte character would panic.
pub(crate) fn clip(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
