//! `policy`: a TracingPolicy file's text through what `vigil policy lint` and the agent run on
//! it: the YAML gate, then `prepare` (validation with a kernel that has every function,
//! compilation and the attach plan) on a kernel with every capability and on one with kprobes
//! only.

use vigil_policy_engine::{
    check_yaml, plan::KernelCaps, prepare_text, Kernel, KernelSymbols, Limits,
};

/// A kernel with every function and tracepoint, so validation goes past the symbol checks.
struct AnyKernel;

impl KernelSymbols for AnyKernel {
    fn function(&self, _name: &str) -> bool {
        true
    }
    fn tracepoint(&self, _subsystem: &str, _event: &str) -> Option<bool> {
        Some(true)
    }
}

const FILE: &str = "fuzz.yaml";

/// See the module's documentation.
pub fn policy(data: &[u8]) {
    // The agent reads policies as UTF-8 text; other bytes are refused before any parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = check_yaml(FILE, text, &Limits::POLICY) {
        let _ = e.to_string();
        return;
    }
    let all = KernelCaps::ALL;
    let kprobes_only = KernelCaps {
        lsm: false,
        fentry: false,
        fmod_ret: false,
        send_signal: false,
        override_return: false,
        ..all
    };
    for caps in [all, kprobes_only] {
        let kernel = Kernel {
            caps,
            symbols: Some(&AnyKernel),
        };
        match prepare_text(FILE, text, &kernel) {
            // Messages are part of what runs: they quote and cut the user's text.
            Err(errors) => {
                let _ = errors.to_string();
            }
            Ok(p) => {
                let _ = format!("{:?}", p.hooks);
            }
        }
    }
}
