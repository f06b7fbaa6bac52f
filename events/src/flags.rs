//! The `process.flags` words, in the order Tetragon writes them, and the two it derives from
//! what vigil already knows: `rootcwd` (the working directory is `/`; Tetragon's kernel side
//! sets it when the resolved working directory is empty, that is the root) and `clone` (the
//! exec is the first one after a fork: the process had been cloned and not yet exec'd).

/// Tetragon's flag words in the order it writes them (`DecodeCommonFlags` in Tetragon's
/// `pkg/reader/exec`). Words vigil adds (`truncCWD`, `truncCgroup`) come after these.
pub const ORDER: [&str; 20] = [
    "execve",
    "execveat",
    "procFS",
    "truncFilename",
    "truncArgs",
    "taskWalk",
    "miss",
    "auid",
    "errorFilename",
    "errorArgs",
    "nocwd",
    "rootcwd",
    "errorCWD",
    "clone",
    "errorDockerNameCwd",
    "errorDockerKn",
    "errorDockerSubsysCgrp",
    "errorDockerSubsys",
    "errorDockerCgroups",
    "errorPathResolutionCwd",
];

// `with_derived` keeps the words it knows as bits of a u32.
const _: () = assert!(ORDER.len() <= 32);

/// `flags` with `rootcwd` added when `cwd` is `/` and `clone` added when `first_exec_after_fork`,
/// every word once, in Tetragon's order (words it does not know keep their order, after its).
pub fn with_derived(flags: &str, cwd: &str, first_exec_after_fork: bool) -> String {
    // Nearly every exec has a lone word, ranked before `rootcwd` and `clone` (or `clone`
    // itself): those three words in that order, without looking the words up.
    let lead = match flags {
        "execve" | "procFS" => Some(flags),
        "clone" | "" => Some(""),
        _ => None,
    };
    if let Some(lead) = lead {
        let rootcwd = if cwd == "/" { "rootcwd" } else { "" };
        let clone = if first_exec_after_fork || flags == "clone" {
            "clone"
        } else {
            ""
        };
        let mut out = String::with_capacity(lead.len() + 14);
        for w in [lead, rootcwd, clone].into_iter().filter(|w| !w.is_empty()) {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(w);
        }
        return out;
    }
    ranked(flags, cwd, first_exec_after_fork)
}

/// [`with_derived`] for any words: each looked up in [`ORDER`].
fn ranked(flags: &str, cwd: &str, first_exec_after_fork: bool) -> String {
    // Every exec and fork goes through here: the words Tetragon knows are kept as a set of
    // their ranks, so they come out in its order without a sort, and only words it does not
    // know (rare) need a list.
    let mut known = 0u32;
    let mut unknown: Vec<&str> = Vec::new();
    let derived = [
        (cwd == "/").then_some("rootcwd"),
        first_exec_after_fork.then_some("clone"),
    ];
    for w in flags.split(' ').chain(derived.into_iter().flatten()) {
        match ORDER.iter().position(|o| *o == w) {
            Some(rank) => known |= 1 << rank,
            None if !w.is_empty() && !unknown.contains(&w) => unknown.push(w),
            None => {}
        }
    }
    let mut out = String::with_capacity(flags.len() + 16);
    let ranked = ORDER
        .iter()
        .enumerate()
        .filter(|(rank, _)| known & (1 << rank) != 0)
        .map(|(_, w)| *w);
    for w in ranked.chain(unknown) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{ranked, with_derived};

    #[test]
    fn a_lone_word_gets_what_every_word_gets() {
        for flags in ["execve", "procFS", "clone", ""] {
            for cwd in ["/", "/home/u", ""] {
                for after_fork in [false, true] {
                    assert_eq!(
                        with_derived(flags, cwd, after_fork),
                        ranked(flags, cwd, after_fork),
                        "{flags:?} {cwd:?} {after_fork}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_exec_in_the_root_directory_after_a_fork_gets_rootcwd_and_clone_in_tetragons_order() {
        assert_eq!(with_derived("execve", "/", true), "execve rootcwd clone");
        assert_eq!(
            with_derived("execve truncArgs errorCWD truncCWD", "/", true),
            "execve truncArgs rootcwd errorCWD clone truncCWD"
        );
    }

    #[test]
    fn a_second_exec_elsewhere_gets_neither_word_and_no_word_is_written_twice() {
        assert_eq!(with_derived("execve", "/home/u", false), "execve");
        assert_eq!(with_derived("procFS rootcwd", "/", false), "procFS rootcwd");
        assert_eq!(with_derived("", "/tmp", false), "");
        assert_eq!(with_derived("clone", "", true), "clone");
        assert_eq!(
            with_derived("zz clone  aa zz execve", "/", false),
            "execve rootcwd clone zz aa"
        );
    }
}
