//! One-line error messages. aya's load errors carry the whole verifier log and io errors sit
//! several sources deep; a user needs the chain on one line, and the log only when debugging
//! (`VIGIL_DEBUG=1`).

/// The error and its sources joined by `: `, each cut at its first line and before any
/// verifier log, repeated parts dropped.
pub fn brief(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let s = err.to_string();
        let s = s.split(". Verifier output:").next().unwrap_or("");
        let s = s.lines().next().unwrap_or("").trim().to_string();
        if !s.is_empty() && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        next = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("program vigil_exec: {0}")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn joins_sources_and_drops_verifier_logs() {
        let inner = std::io::Error::other(
            "the BPF_PROG_LOAD syscall failed. Verifier output: 0: r1 = 0\n1: exit",
        );
        let e = Outer(inner);
        assert_eq!(
            brief(&e),
            "program vigil_exec: the BPF_PROG_LOAD syscall failed"
        );
    }
}
