//! What the running kernel has: its functions (from `/proc/kallsyms`) and tracepoints (from
//! tracefs), so a policy naming a function this kernel lacks is refused with that reason before
//! anything is loaded.

use std::{collections::HashMap, path::Path};

/// Kernel functions and tracepoints a policy may name.
pub trait KernelSymbols {
    /// Whether the kernel has a function called `name`.
    fn function(&self, name: &str) -> bool;
    /// How many text symbols are named exactly `name` (an inline function the compiler emitted
    /// in several files has one copy each, and a kprobe by that name cannot choose).
    fn copies(&self, _name: &str) -> usize {
        1
    }
    /// Whether ftrace can trace `name` (`available_filter_functions`); `None` where that
    /// cannot be read. A kprobe refuses a function it cannot (a `notrace` one, such as the
    /// out-of-line copy of an inline function: the kernel's `inline` implies `notrace`).
    fn traceable(&self, _name: &str) -> Option<bool> {
        None
    }
    /// Whether the tracepoint exists; `None` when that cannot be told (tracefs not mounted).
    fn tracepoint(&self, subsystem: &str, event: &str) -> Option<bool>;
    /// The functions kprobes can attach to whose names `re` matches (a `generated_ftrace`
    /// list); none where they cannot be listed.
    fn functions_matching(&self, _re: &regex::Regex) -> Vec<String> {
        Vec::new()
    }
}

/// The running kernel's symbols.
pub struct RunningKernel {
    /// Function name to address (0 where kallsyms hides addresses from us).
    functions: HashMap<String, u64>,
    /// Names that several text symbols bear exactly, with their count.
    duplicates: HashMap<String, usize>,
    /// ftrace's traceable functions, read when first asked.
    traceable: std::sync::OnceLock<Option<std::collections::HashSet<String>>>,
    tracefs: Option<&'static str>,
}

impl RunningKernel {
    /// Reads `/proc/kallsyms` (names for everyone, addresses for root) and finds tracefs.
    pub fn read() -> std::io::Result<RunningKernel> {
        let text = std::fs::read_to_string("/proc/kallsyms")?;
        Ok(RunningKernel::from_kallsyms(&text))
    }

    /// The functions of a `/proc/kallsyms` text, and tracefs where it is mounted.
    fn from_kallsyms(text: &str) -> RunningKernel {
        let mut exact: HashMap<&str, usize> = HashMap::new();
        let mut functions: HashMap<String, u64> = HashMap::new();
        for l in text.lines() {
            let mut f = l.split_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let addr = u64::from_str_radix(addr, 16).unwrap_or(0);
            if !matches!(kind, "T" | "t" | "W" | "w") {
                continue;
            }
            // Module symbols (`[name]` after) count too: a kprobe by name sees them.
            *exact.entry(name).or_default() += 1;
            // A compiler's part of a function (`bpf_check.cold`, `.isra.0`) names the function
            // where no symbol has its exact name, but never moves the address of one that has
            // (a kprobe by name attaches there, and the hook's key is that address).
            match name.split_once('.') {
                Some((base, _)) => {
                    functions.entry(base.to_string()).or_insert(addr);
                }
                None => {
                    functions.insert(name.to_string(), addr);
                }
            }
        }
        let duplicates = exact
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(name, n)| (name.to_string(), n))
            .collect();
        let tracefs = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
            .into_iter()
            .find(|p| Path::new(p).join("events").is_dir());
        RunningKernel {
            functions,
            duplicates,
            traceable: std::sync::OnceLock::new(),
            tracefs,
        }
    }
}

impl RunningKernel {
    /// The address of a function, when the kernel shows it.
    pub fn address(&self, name: &str) -> Option<u64> {
        self.functions.get(name).copied().filter(|a| *a != 0)
    }
}

impl KernelSymbols for RunningKernel {
    fn function(&self, name: &str) -> bool {
        self.functions.contains_key(name)
    }

    fn copies(&self, name: &str) -> usize {
        self.duplicates.get(name).copied().unwrap_or(1)
    }

    fn traceable(&self, name: &str) -> Option<bool> {
        let set = self.traceable.get_or_init(|| {
            let root = self.tracefs?;
            let text =
                std::fs::read_to_string(Path::new(root).join("available_filter_functions")).ok()?;
            Some(
                text.lines()
                    .filter_map(|l| l.split_whitespace().next())
                    .map(str::to_string)
                    .collect(),
            )
        });
        set.as_ref().map(|s| s.contains(name))
    }

    /// ftrace's list of the functions it can trace, where tracefs shows it (root), else every
    /// function of kallsyms (some of which, `notrace` ones, a kprobe then fails to attach to).
    fn functions_matching(&self, re: &regex::Regex) -> Vec<String> {
        let traceable = self.tracefs.and_then(|root| {
            vigil_safe_fs::read_trusted(
                &Path::new(root).join("available_filter_functions"),
                64 << 20,
            )
            .ok()
        });
        match traceable {
            Some(text) => text
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|f| !f.contains('.') && re.is_match(f))
                .map(str::to_string)
                .collect(),
            None => self
                .functions
                .keys()
                .filter(|f| re.is_match(f))
                .cloned()
                .collect(),
        }
    }

    fn tracepoint(&self, subsystem: &str, event: &str) -> Option<bool> {
        let root = self.tracefs?;
        Some(
            Path::new(root)
                .join("events")
                .join(subsystem)
                .join(event)
                .is_dir(),
        )
    }
}

/// The kernel function a kprobe `call` attaches to: system calls go through their
/// architecture wrapper (`sys_openat` is `__x64_sys_openat`).
pub fn kprobe_function_candidates(call: &str, syscall: bool) -> Vec<String> {
    if !syscall {
        return vec![call.to_string()];
    }
    let bare = bare_syscall(call);
    vec![
        reported_function(call, syscall),
        format!("__se_sys_{bare}"),
        format!("sys_{bare}"),
    ]
}

/// `setuid` for `sys_setuid`, `__x64_sys_setuid` or `setuid`.
fn bare_syscall(call: &str) -> &str {
    let base = call.strip_prefix("__x64_").unwrap_or(call);
    base.strip_prefix("sys_").unwrap_or(base)
}

/// The function name Tetragon reports for a hook on `call`: a system call by its x86-64 wrapper
/// (`sys_setuid` and `setuid` are `__x64_sys_setuid`), anything else as named.
pub fn reported_function(call: &str, syscall: bool) -> String {
    if syscall {
        format!("__x64_sys_{}", bare_syscall(call))
    } else {
        call.to_string()
    }
}

/// The kernel function behind an LSM hook (`file_open` is `security_file_open`, and BPF LSM
/// programs attach to `bpf_lsm_file_open`).
pub fn lsm_function_candidates(hook: &str) -> Vec<String> {
    vec![format!("security_{hook}"), format!("bpf_lsm_{hook}")]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_functions_cold_part_never_moves_its_address() {
        for text in [
            "ffffffff81000100 t bpf_check.cold\nffffffff81000200 T bpf_check\n",
            "ffffffff81000200 T bpf_check\nffffffff81000100 t bpf_check.cold\n",
        ] {
            let k = RunningKernel::from_kallsyms(text);
            assert_eq!(k.address("bpf_check"), Some(0xffffffff81000200));
        }
        let k = RunningKernel::from_kallsyms("ffffffff81000100 t only_part.isra.0\n");
        assert!(k.function("only_part"));
    }
}
