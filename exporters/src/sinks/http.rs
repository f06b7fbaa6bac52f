//! What the network sinks share: the HTTP client of the HTTP sinks (rustls, a request timeout,
//! and the system roots plus, when configured, the CA certificates of a PEM file), and the
//! reading of what a peer answers. A destination is outside the agent's trust: its answers are
//! read up to a bound ([`body_prefix`]), and its words reach a reason or a log line only
//! clipped and escaped ([`peer_text`]), so that a hostile or broken server can neither make the
//! agent hold gigabytes nor forge the agent's log lines or drive the terminal that shows them.

use std::{path::Path, time::Duration};

use vigil_events::compact::escape;

/// Most bytes of a peer's text a message keeps: enough to diagnose, too little to matter when a
/// batch's worth of records is refused.
pub const PEER_TEXT_MAX: usize = 1024;

/// Most bytes read of an answer that is a small JSON document (a HEC acknowledgement).
pub const SMALL_RESPONSE_MAX: usize = 64 * 1024;

/// A client for a sink; errors name the CA file.
pub fn client(timeout_secs: u64, ca_file: Option<&Path>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(timeout_secs))
        .use_rustls_tls();
    if let Some(ca) = ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("ca_file {}: {e}", ca.display()))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| e.to_string())
}

/// Text from a peer (a response body, an error message it sent), fit for a reason or a log
/// line: at most [`PEER_TEXT_MAX`] bytes, clipped at a character boundary and marked so,
/// invalid UTF-8 replaced, and every control, C1 and bidirectional-override character escaped
/// (a newline cannot start a forged `vigil:` line, an ESC cannot reach the terminal).
pub fn peer_text(raw: &[u8]) -> String {
    let mut end = raw.len().min(PEER_TEXT_MAX);
    if end < raw.len() {
        // The cut must not split a character: back off over its continuation bytes (a UTF-8
        // character has at most 3).
        let floor = end.saturating_sub(3);
        while end > floor && raw[end] & 0xc0 == 0x80 {
            end -= 1;
        }
    }
    let text = String::from_utf8_lossy(&raw[..end]);
    let mut out = String::with_capacity(text.len().min(PEER_TEXT_MAX));
    let mut clipped = end < raw.len();
    let mut one = [0u8; 4];
    for c in text.chars() {
        // Escaping lengthens the text: the bound holds for what is kept, escapes included.
        let shown = escape(c.encode_utf8(&mut one));
        if out.len() + shown.len() > PEER_TEXT_MAX {
            clipped = true;
            break;
        }
        out.push_str(&shown);
    }
    if clipped {
        out.push_str(" [clipped]");
    }
    out
}

/// [`peer_text`] of an error whose words may come from the peer (a TLS alert, a broker's or a
/// collector's message).
pub fn peer_error(e: &impl std::fmt::Display) -> String {
    peer_text(e.to_string().as_bytes())
}

/// The first `limit` bytes of a response's body, and whether there was more. The rest is never
/// read: however much the peer sends, the agent holds at most `limit` bytes of it.
pub async fn body_prefix(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = limit - out.len();
        if chunk.len() > room {
            out.extend_from_slice(&chunk[..room]);
            return Ok((out, true));
        }
        out.extend_from_slice(&chunk);
    }
    Ok((out, false))
}

/// The body of an answer that is only reported (an error status), as [`peer_text`]; what could
/// not be read is left out.
pub async fn peer_body(resp: reqwest::Response) -> String {
    // One byte more than is kept, so that a longer body is marked as clipped.
    match body_prefix(resp, PEER_TEXT_MAX + 1).await {
        Ok((raw, _)) => peer_text(&raw),
        Err(e) => format!("(the body could not be read: {})", peer_error(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_text_is_clipped_at_a_character_and_escaped() {
        let forged = peer_text(b"\nvigil: policy x removed (forged)\n\x1b[2J\xe2\x80\xae\xff");
        assert_eq!(
            forged,
            "\\x0avigil: policy x removed (forged)\\x0a\\x1b[2J\\u{202e}\u{fffd}"
        );
        // A two-byte character across the bound is dropped whole, not split into U+FFFD.
        let mut raw = vec![b'a'; PEER_TEXT_MAX - 1];
        raw.extend_from_slice("é and more".as_bytes());
        let t = peer_text(&raw);
        assert_eq!(t, format!("{} [clipped]", "a".repeat(PEER_TEXT_MAX - 1)));
        // Escapes count against the bound.
        let t = peer_text(&[0x1b; 4 * PEER_TEXT_MAX]);
        assert!(t.len() <= PEER_TEXT_MAX + " [clipped]".len(), "{}", t.len());
        assert!(t.ends_with("\\x1b [clipped]"), "{t}");
        assert_eq!(peer_text(b"plain"), "plain");
    }
}
