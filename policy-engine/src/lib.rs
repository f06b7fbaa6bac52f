//! TracingPolicy handling for vigil.
//!
//! [`spec`] holds the policy types (Tetragon's `TracingPolicy` CRD, field for field);
//! [`load_policy`] parses a document and checks it, returning every problem as a
//! [`PolicyError`] that names the file, line and column, the field path, the reason and a fix.
//! [`locate`] maps field paths back to positions in the source; [`kernel`] checks the functions
//! and tracepoints a policy names against the running kernel. [`plan`] picks how each hook
//! attaches on this kernel and what that guarantees; [`compile`] turns file-open hooks into
//! kernel rules and [`hooks`] every other kprobe into a generic hook with its selectors;
//! [`evaluate`] and [`evaluate_hooks`] decide offline what the kernel would.
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
mod error;
pub mod evaluate;
pub mod evaluate_hooks;
pub mod hooks;
pub mod input;
pub mod kernel;
pub mod locate;
pub mod plan;
mod selectors;
pub mod sigma;
pub mod spec;
mod validate;
mod values;

pub use args::{arg_class, ArgClass, ARG_TYPES};
pub use error::{PolicyError, PolicyErrors};
pub use input::{check_yaml, read_yaml, InputError, Limits};
pub use kernel::KernelSymbols;
pub use validate::{load_policy, load_policy_file, load_policy_for, Mode, Policy};
