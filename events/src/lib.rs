//! The event model every vigil crate speaks.
//!
//! An [`Event`] is one JSON line in Tetragon's shape: exactly one event key
//! ([`EventBody::ProcessExec`], [`EventBody::ProcessExit`]) beside `node_name` and `time`, so
//! the jq filters, Splunk searches and dashboards written for Tetragon keep working. Each event
//! carries a [`Process`] (its identity: [`ExecId`], credentials, [`Capabilities`],
//! [`Namespaces`], binary, arguments, cwd) and the process's parent.
//!
//! [`ExecId`] identifies one execution across nodes and reboots; [`compact::render`] gives the
//! one readable line per event of `tetra getevents -o compact`; [`time`] formats the kernel's
//! boot-time stamps as RFC 3339.
//!
//! ```
//! use vigil_events::ExecId;
//! let id = ExecId::new("node-a", 1_000_000, 42);
//! assert_eq!(id.decode().unwrap(), ("node-a".to_string(), 1_000_000, 42));
//! ```
#![deny(missing_docs)]

pub mod caps;
pub mod compact;
pub mod dns;
mod encoded;
pub mod encryption;
mod event;
mod exec_id;
pub mod flags;
mod int64;
mod json_writer;
pub mod kernel_objects;
pub mod mode;
mod pod;
pub mod text;
pub mod time;

pub use encoded::end as end_process;
pub use encryption::Encryption;
pub use event::*;
pub use exec_id::{ExecId, ExecIdPrefix};
pub use json_writer::write_event as write_json;
pub use pod::{Container, Image, Pod, SecurityContext};
