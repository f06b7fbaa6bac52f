//! Whether a flow left the node encrypted: the `encryption` object of a socket argument and of
//! a `flow_encryption` event (vigil's), and the verdict's words.
//!
//! `mode` is the verdict: `wireguard` (the packets left through the kernel's WireGuard device),
//! `ipsec` (an IPsec SA transformed them), `none` (they left in clear), `local` (they stay on
//! this machine) or `unknown` (vigil cannot tell: a tun device, whose program may or may not
//! encrypt, or a socket of another network namespace whose packets the node forwards).
//! `evidence` says what the verdict rests on: `route` (the socket's cached route at the
//! event), `xfrm` (the transformation applied on output), `device` (the device the packets
//! were handed to) or `pending` (nothing seen yet).

use serde::{Deserialize, Serialize};

/// The verdict's words.
pub mod mode {
    /// Through the kernel's WireGuard device.
    pub const WIREGUARD: &str = "wireguard";
    /// Transformed by an IPsec SA (ESP with a cipher).
    pub const IPSEC: &str = "ipsec";
    /// In clear.
    pub const NONE: &str = "none";
    /// Stays on this machine.
    pub const LOCAL: &str = "local";
    /// Not known.
    pub const UNKNOWN: &str = "unknown";
}

/// What a verdict rests on.
pub mod evidence {
    /// The socket's cached route.
    pub const ROUTE: &str = "route";
    /// The transformation applied on output (xfrm).
    pub const XFRM: &str = "xfrm";
    /// The device the packets were handed to.
    pub const DEVICE: &str = "device";
    /// Nothing seen yet.
    pub const PENDING: &str = "pending";
}

/// `encryption`: how a flow leaves the node.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Encryption {
    /// The verdict ([`mode`]).
    pub mode: String,
    /// What it rests on ([`evidence`]).
    pub evidence: String,
    /// The device, by name, where the agent can name it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface: String,
    /// The device's kind: `wireguard`, `tun`, `loopback`, `device` (any other), ...
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface_kind: String,
    /// The IPsec SA's SPI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spi: Option<u32>,
    /// The IPsec SA's mode: `tunnel`, `transport` or `beet`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ipsec_mode: String,
    /// The IPsec SA's reqid.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reqid: u32,
    /// The IPsec SA's destination: the far end of the tunnel.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub outer_destination: String,
    /// The remote range the destination is in, which made the flow tracked.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub remote_range: String,
    /// Read inside a VXLAN packet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub vxlan: bool,
    /// Why, where the words above do not say it (AH, a null cipher, a tun device).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Encryption {
    /// Whether the flow left in clear for a remote range: what the shipped alert is about.
    pub fn plaintext_to_remote(&self) -> bool {
        self.mode == mode::NONE && !self.remote_range.is_empty()
    }
}
