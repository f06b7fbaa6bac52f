//! TracingPolicy handling for vigil.
//!
//! [`prepare`] is the one entry point from a policy file to what the kernel runs: it reads the
//! file through the gate ([`input`]), parses and validates it ([`load_policy`]), compiles every
//! hook ([`compile`], with the compiled form and the selector compiler in [`hook_rule`]) and plans where each attaches
//! on this kernel ([`plan`]), reporting every problem as a [`PolicyError`] that names the file,
//! line and column, the field path, the reason and a fix. The agent and `vigil policy lint`,
//! `explain` and `test` all call it.
//!
//! [`spec`] holds the policy types (Tetragon's `TracingPolicy` CRD, field for field);
//! [`locate`] maps field paths back to positions in the source; [`kernel`] reads the running
//! kernel's functions and tracepoints; [`evaluate_hooks`] decides offline what the kernel
//! would, for `vigil policy test`. What the kernel can hold (selectors, conditions, value
//! lengths, hooks per attach point) is defined once, in `vigil_bpf_kprobes::abi`.
//!
//! ```
//! let text = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: x\n\
//!             spec:\n  kprobes:\n  - call: tcp_connect\n    args:\n    - index: 0\n      type: socket\n";
//! let errors = vigil_policy_engine::load_policy("x.yaml", text).unwrap_err();
//! let e = &errors.0[0];
//! assert_eq!((e.line, e.column), (10, 13));
//! assert_eq!(e.path, "spec.kprobes[0].args[0].type");
//! assert!(e.reason.contains("`socket` is not supported"));
//! ```
#![deny(missing_docs)]

mod args;
pub mod compile;
pub mod crd;
mod documents;
mod error;
pub mod evaluate_hooks;
pub mod gaps;
pub mod hook_rule;
pub mod input;
pub mod kernel;
pub mod lists;
pub mod locate;
pub mod overrides;
pub mod plan;
pub mod prepare;
pub mod scope;
mod selectors;
pub mod sigma;
pub mod spec;
pub mod tracepoints;
pub mod uprobes;
mod validate;
mod values;

pub use args::{arg_class, ArgClass, ARG_TYPES};
pub use error::{PolicyError, PolicyErrors};
pub use input::{check_yaml, read_yaml, InputError, Limits};
pub use kernel::KernelSymbols;
pub use plan::Kernel;
pub use prepare::{
    prepare, prepare_as, prepare_text, prepare_text_as, ModeOf, Prepared, PreparedHook,
};
pub use validate::{
    load_local_policy, load_policy, load_policy_file, load_policy_for, Mode, Policy,
};
