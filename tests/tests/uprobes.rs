//! Uprobes from policy: the real agent hooks functions of the system's own binaries and
//! libraries, and reports what a real process passed them: the command line typed into an
//! interactive bash (the return of `readline`, with its argument, the prompt, kept from the
//! entry, and a selector on both), and the plaintext an OpenSSL client writes into
//! a TLS connection to a local server (`SSL_write`'s buffer, before encryption). The host's
//! kernel has the uprobe PMU, and so does the VM's, where the same scenarios run (the matrix
//! copies bash, openssl and their libraries into the guest).

use std::{
    io::{Read, Write},
    os::fd::{FromRawFd, OwnedFd},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use vigil_tests::{require_root, Agent, TempDir};

const BASH: &str = "/usr/bin/bash";
const LIBSSL: &str = "/usr/lib/x86_64-linux-gnu/libssl.so.3";
const OPENSSL: &str = "/usr/bin/openssl";
/// The prompt the scenario's shell shows: readline's argument.
const PROMPT: &str = "vigil-prompt> ";

fn uprobe_events<'a>(events: &'a [Value], symbol: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter_map(|e| e.get("process_uprobe"))
        .filter(|e| e["symbol"] == symbol)
        .collect()
}

fn need(file: &str) {
    assert!(
        Path::new(file).is_file(),
        "{file} is missing: this scenario hooks the system's own (make test installs it on the host; the VM matrix copies it)"
    );
}

/// A pseudo-terminal pair: bash uses readline only when its input is a terminal.
fn pty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two descriptors into the integers it is given.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are new and owned here alone.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

#[test]
fn a_uprobe_on_bash_readline_reports_the_command_typed_into_an_interactive_shell() {
    require_root();
    need(BASH);
    let dir = TempDir::new("uprobe-readline");
    let policy = dir.path().join("readline.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: bash-readline\nspec:\n  uprobes:\n  - path: {BASH}\n    symbols: [readline]\n    args:\n    - index: 0\n      type: string\n      label: prompt\n    return: true\n    returnArg:\n      index: 0\n      type: string\n      label: command\n    selectors:\n    - matchArgs:\n      - index: 0\n        operator: Equal\n        values: [\"{PROMPT}\"]\n      matchReturnArgs:\n      - index: 0\n        operator: Prefix\n        values: [\"echo vigil-typed-\"]\n    message: a command typed into bash\n    tags: [shell]\n"
        ),
    )
    .unwrap();
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    let (master, slave) = pty();
    let mut shell = Command::new(BASH)
        .args(["--norc", "--noprofile", "-i"])
        .env("HOME", dir.path())
        .env("HISTFILE", "/dev/null")
        .env("TERM", "dumb")
        .env("PS1", PROMPT)
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .spawn()
        .expect("run bash");
    let mut tty = std::fs::File::from(master);
    let marker = format!("vigil-typed-{}", std::process::id());
    tty.write_all(format!("echo {marker}\nexit\n").as_bytes())
        .unwrap();
    // Drain what the shell echoes so it never blocks on a full terminal.
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = tty.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = shell.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "bash did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    let echoed = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    assert!(status.success(), "bash: {status}: {echoed}");
    let run = agent.stop();
    let typed: Vec<_> = uprobe_events(&run.events, "readline")
        .into_iter()
        .filter(|e| e["process"]["pid"] == shell.id())
        .collect();
    // The argument (the prompt, kept from the entry) and the return value (the line typed)
    // in one event; the selector matched both, so `exit` was not reported.
    let commands: Vec<&Value> = typed.iter().map(|e| &e["args"][1]["string_arg"]).collect();
    assert_eq!(
        commands,
        [&Value::from(format!("echo {marker}"))],
        "bash's readline events: {typed:#?}; all: {:#?}; terminal: {echoed}",
        uprobe_events(&run.events, "readline")
    );
    let e = typed[0];
    assert_eq!(e["args"][0]["string_arg"], PROMPT);
    assert_eq!(e["path"], BASH);
    assert_eq!(e["policy_name"], "bash-readline");
    assert_eq!(e["message"], "a command typed into bash");
    assert_eq!(e["tags"][0], "shell");
    assert_eq!(e["action"], "KPROBE_ACTION_POST");
    assert_eq!(e["process"]["binary"], BASH);
    assert!(e.get("function_name").is_none(), "{e}");
}

#[test]
fn a_uprobe_on_ssl_write_reports_the_plaintext_a_client_sends_over_tls() {
    require_root();
    need(LIBSSL);
    need(OPENSSL);
    let dir = TempDir::new("uprobe-ssl");
    let ca = vigil_tests::certs::TestCa::new(dir.path(), "uprobe");
    let server_cert = ca.server();
    let policy = dir.path().join("ssl.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: tls-plaintext\nspec:\n  uprobes:\n  - path: {LIBSSL}\n    symbols: [SSL_write]\n    args:\n    - index: 1\n      type: char_buf\n      sizeArgIndex: 3\n      label: plaintext\n    - index: 2\n      type: int\n      label: length\n    selectors:\n    - matchBinaries:\n      - operator: In\n        values: [{OPENSSL}]\n"
        ),
    )
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut server = Command::new(OPENSSL)
        // It says ACCEPT when it listens, then writes what it receives; its input stays open
        // (at the end of its input it closes the connection).
        .args(["s_server", "-naccept", "1", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&server_cert.cert)
        .arg("-key")
        .arg(&server_cert.key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run openssl s_server");
    let _server_input = server.stdin.take();
    // What the server receives, line by line, as it comes.
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let server_out = server.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(server_out)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    let mut got = String::new();
    while !got.contains("ACCEPT") {
        match lines.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => got.push_str(&line),
            Err(e) => panic!("openssl s_server never listened ({e}): {got}"),
        }
    }
    let secret = format!("vigil-secret-{}", std::process::id());
    let mut client = Command::new(OPENSSL)
        .args(["s_client", "-quiet", "-no_ign_eof", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-CAfile")
        .arg(&ca.cert)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl s_client");
    let client_pid = client.id();
    client
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{secret}\n").as_bytes())
        .unwrap();
    let out = client.wait_with_output().unwrap();
    while !got.contains(&secret) {
        match lines.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => got.push_str(&line),
            Err(_) => break,
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        got.contains(&secret),
        "the server did not receive the line over TLS: {got:?}; client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = agent.stop();
    let writes = uprobe_events(&run.events, "SSL_write");
    let e = writes
        .iter()
        .find(|e| plaintext(e).contains(&secret))
        .unwrap_or_else(|| panic!("no SSL_write event carries the plaintext: {writes:#?}"));
    assert_eq!(e["path"], LIBSSL);
    assert_eq!(e["policy_name"], "tls-plaintext");
    assert_eq!(e["process"]["binary"], OPENSSL);
    assert_eq!(e["process"]["pid"], client_pid);
    // SSL_write(ssl, buf, num): the buffer's bytes are `num` long, the line and its newline.
    assert_eq!(e["args"][1]["int_arg"], secret.len() + 1);
    assert_eq!(plaintext(e), format!("{secret}\n"));
    // Only the binary the selector names is reported.
    assert!(writes.iter().all(|e| e["process"]["binary"] == OPENSSL));
}

/// The bytes of an SSL_write event's buffer (base64 in the event, as Tetragon writes bytes).
fn plaintext(e: &Value) -> String {
    use base64::Engine;
    e["args"][0]["bytes_arg"]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// A function of this test binary for the rateLimit scenario: not inlined, found by symbol.
#[no_mangle]
#[inline(never)]
pub extern "C" fn vigil_uprobe_rate_target(x: u64) -> u64 {
    std::hint::black_box(x.wrapping_add(1))
}

#[test]
fn rate_limit_on_post_reports_a_repeated_match_once_per_period_and_counts_the_rest() {
    require_root();
    let exe = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
    let exe = exe.to_str().unwrap();
    let dir = TempDir::new("uprobe-rate");
    let policy = dir.path().join("rate.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: rate-limited\nspec:\n  uprobes:\n  - path: {exe}\n    symbols: [vigil_uprobe_rate_target]\n    args:\n    - index: 0\n      type: uint64\n    selectors:\n    - matchActions:\n      - action: Post\n        rateLimit: 1m\n"
        ),
    )
    .unwrap();
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    for x in [7, 7, 7, 7, 7, 8, 8, 8] {
        vigil_uprobe_rate_target(std::hint::black_box(x));
    }
    let run = agent.stop();
    let mine: Vec<&Value> = uprobe_events(&run.events, "vigil_uprobe_rate_target")
        .into_iter()
        .filter(|e| e["process"]["pid"] == std::process::id())
        .collect();
    let values: Vec<&Value> = mine.iter().map(|e| &e["args"][0]["size_arg"]).collect();
    assert_eq!(
        values,
        [&Value::from("7"), &Value::from("8")],
        "one report per argument value within the minute: {mine:#?}"
    );
    assert_eq!(run.stats["rate_limited"], 6, "{}", run.stats);
}
