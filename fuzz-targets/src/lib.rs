//! The bodies of vigil's fuzz targets, one `pub fn <target>(data: &[u8])` each.
//!
//! They live here, in an ordinary workspace crate without libFuzzer, so that the same code runs
//! two ways: `fuzz/` (a cargo-fuzz crate outside the workspace, nightly, `make fuzz`) wraps each
//! in `fuzz_target!` to explore, and this crate's `tests/replay.rs` runs every saved input under
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` through it on the stable toolchain
//! (`make test`): deterministic, in seconds, with no exploration.
//!
//! A body returns normally for any input it rejects; it panics only when the code under test
//! panics or breaks one of the properties it checks (a compact line with a control character
//! in it, a JSON encoding that does not decode back to its event, a spool line that does not
//! survive its round trip).

mod config;
mod encoders;
mod filters;
mod policy;
mod records;
mod samples;
mod sigma;

pub use config::config;
pub use encoders::{dns, events};
pub use filters::filters;
pub use policy::policy;
pub use records::{ring_record, spool_lines, spool_scratch_dir, spool_segment};
pub use sigma::sigma;

/// A target: its name (the file `fuzz/fuzz_targets/<name>.rs` and the corpus directories are
/// named after it) and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: &[Target] = &[
    ("policy", policy),
    ("config", config),
    ("sigma", sigma),
    ("dns", dns),
    ("ring_record", ring_record),
    ("spool_lines", spool_lines),
    ("spool_segment", spool_segment),
    ("filters", filters),
    ("events", events),
];
