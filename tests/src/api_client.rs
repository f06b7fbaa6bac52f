//! The API client written elsewhere: tests/api-client/client.py, on Python's grpcio from
//! `make test-deps`.

use std::{
    path::Path,
    process::{Command, Output},
};

use serde_json::Value;

/// Runs tests/api-client/client.py with Python's grpc from `make test-deps`.
pub fn python(args: &[&str]) -> (Value, Output) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tag = String::from_utf8(
        Command::new("python3")
            .args(["-c", "import sys; print('cp%d%d' % sys.version_info[:2])"])
            .output()
            .expect("python3 runs (make test-deps)")
            .stdout,
    )
    .unwrap();
    let tools = repo.join("target/tools/grpc-py").join(tag.trim());
    assert!(
        tools.join(".done").is_file(),
        "grpcio is not unpacked in {}: run make test-deps",
        tools.display()
    );
    let out = Command::new("python3")
        .arg("-S")
        .arg(repo.join("tests/api-client/client.py"))
        .args(args)
        .env("PYTHONPATH", &tools)
        .output()
        .expect("run the Python client");
    let text = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "client.py {args:?} printed no JSON ({e}):\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (v, out)
}
