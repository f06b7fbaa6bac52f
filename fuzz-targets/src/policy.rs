//! `policy`: a TracingPolicy file's text through what `vigil policy lint` and the agent run on
//! it: the YAML gate, parsing and validation with a kernel that has every function, then the
//! attach plan (on a kernel with every capability and on one with kprobes only) and the
//! compiler.

use vigil_policy_engine::{
    check_yaml, compile::compile, load_policy_for, plan::plan, plan::KernelCaps, KernelSymbols,
    Limits,
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
    let policy = match load_policy_for(FILE, text, Some(&AnyKernel)) {
        Ok(p) => p,
        Err(errors) => {
            // Messages are part of what runs: they quote and cut the user's text.
            let _ = errors.to_string();
            return;
        }
    };
    let all = KernelCaps {
        lsm: true,
        kprobe: true,
        fentry: true,
        tracepoint: true,
        send_signal: true,
        override_return: true,
    };
    let kprobes_only = KernelCaps {
        lsm: false,
        fentry: false,
        send_signal: false,
        override_return: false,
        ..all
    };
    for caps in [all, kprobes_only] {
        if let Err(errors) = plan(&policy, &caps) {
            for e in errors {
                let _ = format!("{}: {}", e.path, e.reason);
            }
        }
    }
    match compile(&policy) {
        Ok(compiled) => {
            let _ = format!("{:?} {:?}", compiled.rules, compiled.hooks);
        }
        Err(errors) => {
            for e in errors {
                let _ = format!("{}: {}", e.path, e.reason);
            }
        }
    }
}
