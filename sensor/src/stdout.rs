//! What the subcommands print (`probe`, `policy ...`, `sigma test`). A reader that goes away
//! (`vigil sigma test ... | head -1`) shows up as EPIPE, since Rust ignores SIGPIPE, where
//! `println!` would panic: here the output ends there, quietly, and the command finishes its
//! work and exits with the status it would have had, so a script under `set -o pipefail` still
//! sees a lint that found problems. The agent's own stdout is a sink of the exporters' pipeline
//! instead, which closes on EPIPE while enforcement goes on (see `output.rs`).

use std::{
    io::{ErrorKind, Write},
    sync::atomic::{AtomicBool, Ordering},
};

/// Whether the reader has gone: nothing more is written.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether stdout's reader has gone (a search stops reading then).
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

/// Writes `text` to stdout. A closed reader ends the output quietly; another failure (a full
/// disk under a redirect) is an error that says it was stdout.
pub fn write(text: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    if CLOSED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    match out.write_fmt(text).and_then(|()| out.flush()) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => {
            CLOSED.store(true, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => Err(std::io::Error::new(
            e.kind(),
            format!("cannot write to stdout: {e}"),
        )),
        Ok(()) => Ok(()),
    }
}

/// `println!` through [`write`]: returns `std::io::Result<()>` instead of panicking.
macro_rules! outln {
    () => {
        $crate::stdout::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;
