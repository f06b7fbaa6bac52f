//! The export-file sink against a real directory: rotation, gzip, links refused, and writes
//! that fail partway (a full disk, a failed rotation, a crash mid-write).

use super::*;
use std::{io::Write, os::unix::fs::PermissionsExt, path::Path};

#[test]
fn files_rotate_by_size_into_gzipped_backups_and_keep_a_bounded_number() {
    let dir = std::env::temp_dir().join(format!("vigil-file-sink-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("events.jsonl");
    let mut sink = FileSink::new(FileConfig {
        max_size_mb: 1,
        max_backups: 2,
        ..FileConfig::at(path.clone())
    })
    .unwrap();
    let rec = |n: usize| Record {
        time_ns: 0,
        kind: "process_exec",
        exec_id: String::new().into(),
        json: format!("{{\"n\":{n},\"pad\":\"{}\"}}", "y".repeat(1000))
            .into_bytes()
            .into(),
    };
    // About 4.1 MiB: four rotations, of which two backups are kept.
    for chunk in (0..4200).collect::<Vec<_>>().chunks(100) {
        let batch: Vec<Record> = chunk.iter().map(|n| rec(*n)).collect();
        assert_eq!(sink.deliver(&batch), Delivery::Delivered);
    }
    // The last rotation's gzip may still run: a stopping sink waits for it.
    drop(sink);
    assert!(!dir.join("events.jsonl.rotated").exists());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    let b1 = dir.join("events.jsonl.1.gz");
    let b2 = dir.join("events.jsonl.2.gz");
    assert!(b1.exists() && b2.exists());
    assert!(
        !dir.join("events.jsonl.3.gz").exists(),
        "only max_backups are kept"
    );
    assert_eq!(mode(&b1), 0o600);
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(File::open(&b1).unwrap()),
        &mut text,
    )
    .unwrap();
    assert!(
        text.lines().count() > 900,
        "a backup holds about 1 MiB of lines"
    );
    assert!(text
        .lines()
        .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
    let current = std::fs::read_to_string(&path).unwrap();
    assert!(current.lines().last().unwrap().contains("\"n\":4199"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_link_at_the_file_or_a_backup_name_is_refused_at_start_and_not_followed() {
    let dir = std::env::temp_dir().join(format!("vigil-file-link-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let target = dir.join("precious");
    std::fs::write(&target, "root's data\n").unwrap();
    for planted in [
        "events.jsonl",
        "events.jsonl.1.gz",
        "events.jsonl.5.gz",
        "events.jsonl.rotated",
    ] {
        let link = dir.join(planted);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = FileSink::new(FileConfig::at(dir.join("events.jsonl")))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(link.to_str().unwrap()), "{err}");
        assert!(err.contains("symbolic link"), "{err}");
        std::fs::remove_file(&link).unwrap();
    }
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "root's data\n");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Numbered records of about 100 bytes.
fn numbered(range: std::ops::Range<usize>) -> Vec<Record> {
    range
        .map(|n| Record {
            time_ns: 0,
            kind: "process_exec",
            exec_id: String::new().into(),
            json: format!("{{\"n\":{n},\"pad\":\"{}\"}}", "p".repeat(80))
                .into_bytes()
                .into(),
        })
        .collect()
}

/// The record numbers of the lines of `files`, in order; every line must be whole.
fn numbers_in(files: &[PathBuf]) -> Vec<usize> {
    let mut numbers = Vec::new();
    for f in files {
        for line in std::fs::read_to_string(f).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("a whole line");
            numbers.push(v["n"].as_u64().unwrap() as usize);
        }
    }
    numbers
}

/// A rotation that fails partway through a batch (a directory where the backup must go)
/// delivers the lines already written and has only the rest retried: each line once.
#[test]
fn a_batch_cut_short_by_a_failed_rotation_delivers_its_written_lines_once() {
    let dir = std::env::temp_dir().join(format!("vigil-file-partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("events.jsonl");
    let mut sink = FileSink::new(FileConfig {
        max_size_mb: 1,
        max_backups: 1,
        compress: false,
        ..FileConfig::at(path.clone())
    })
    .unwrap();
    let backup = dir.join("events.jsonl.1");
    std::fs::create_dir(&backup).unwrap();
    std::fs::write(backup.join("kept"), b"x").unwrap();
    let batch = numbered(0..15_000);
    let Delivery::Partial { retry, rejected } = sink.deliver(&batch) else {
        panic!("a batch half written is delivered in part");
    };
    assert!(rejected.is_empty());
    let first = retry[0];
    assert!(
        (10_000..11_000).contains(&first),
        "{first}: a full file's lines"
    );
    assert_eq!(retry, (first..15_000).collect::<Vec<_>>());
    std::fs::remove_dir_all(&backup).unwrap();
    let rest: Vec<Record> = retry.iter().map(|i| batch[*i].clone()).collect();
    assert_eq!(sink.deliver(&rest), Delivery::Delivered);
    drop(sink);
    assert_eq!(numbers_in(&[backup, path]), (0..15_000).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Set in the child process of the full-disk test.
const FULL_DISK_CHILD: &str = "VIGIL_TEST_FULL_DISK_CHILD";

/// A write that fails partway (the disk full, here a file size limit) leaves the file as it
/// was before the batch, not with the batch's first lines and a line cut short: the retry
/// then writes each line once and whole. Run in a child process, since the limit holds for
/// every file the process writes.
#[test]
fn a_disk_that_fills_partway_through_a_batch_leaves_no_line_twice_or_cut() {
    if std::env::var_os(FULL_DISK_CHILD).is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sinks::file::tests::a_disk_that_fills_partway_through_a_batch_leaves_no_line_twice_or_cut",
            ])
            .env(FULL_DISK_CHILD, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    // The hard limit is kept: raising it needs CAP_SYS_RESOURCE.
    let mut hard = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a plain system call filling a valid struct.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut hard) }, 0);
    let limit = |bytes: libc::rlim_t| {
        let l = libc::rlimit {
            rlim_cur: bytes.min(hard.rlim_max),
            rlim_max: hard.rlim_max,
        };
        // SAFETY: a plain system call on a valid struct.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &l) }, 0);
    };
    // Past the limit a write fails with EFBIG rather than killing the process.
    // SAFETY: ignoring a signal, in a process of its own.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let dir = std::env::temp_dir().join(format!("vigil-file-full-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("events.jsonl");
    let mut sink = FileSink::new(FileConfig::at(path.clone())).unwrap();
    assert_eq!(sink.deliver(&numbered(0..50)), Delivery::Delivered);
    let before = std::fs::metadata(&path).unwrap().len();
    limit(before + 20_000);
    let batch = numbered(50..2_000);
    assert!(matches!(sink.deliver(&batch), Delivery::Retry(_)));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), before);
    limit(hard.rlim_max);
    assert_eq!(sink.deliver(&batch), Delivery::Delivered);
    assert_eq!(
        numbers_in(std::slice::from_ref(&path)),
        (0..2_000).collect::<Vec<_>>()
    );
    // The file cut to nothing from outside (`copytruncate`), then the disk full again: the
    // cut goes back to the file's own length, never lengthening it with zeros.
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    limit(2_000);
    let batch = numbered(2_000..2_100);
    assert!(matches!(sink.deliver(&batch), Delivery::Retry(_)));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    limit(hard.rlim_max);
    assert_eq!(sink.deliver(&batch), Delivery::Delivered);
    drop(sink);
    assert_eq!(numbers_in(&[path]), (2_000..2_100).collect::<Vec<_>>());
    // A file ending in a line cut short, on a disk still full: the agent starts, the newline
    // waits for the disk, and then the lines after the cut one are whole.
    let cut = dir.join("cut.jsonl");
    std::fs::write(&cut, b"{\"n\":0}\n{\"n\":1,\"pa").unwrap();
    std::fs::set_permissions(&cut, std::fs::Permissions::from_mode(0o600)).unwrap();
    limit(std::fs::metadata(&cut).unwrap().len());
    let mut sink = FileSink::new(FileConfig::at(cut.clone())).expect("starts on a full disk");
    let batch = numbered(2..4);
    assert!(matches!(sink.deliver(&batch), Delivery::Retry(_)));
    limit(hard.rlim_max);
    assert_eq!(sink.deliver(&batch), Delivery::Delivered);
    drop(sink);
    let text = std::fs::read_to_string(&cut).unwrap();
    assert_eq!(
        text,
        format!(
            "{{\"n\":0}}\n{{\"n\":1,\"pa\n{}\n{}\n",
            std::str::from_utf8(&batch[0].json).unwrap(),
            std::str::from_utf8(&batch[1].json).unwrap()
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A file left ending in a line cut short (a crash mid-write) gets a newline when the sink
/// opens it: the lines after it are whole, not glued to the cut one.
#[test]
fn a_file_ending_in_a_cut_line_is_given_a_newline_before_the_next_lines() {
    let dir = std::env::temp_dir().join(format!("vigil-file-tail-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("events.jsonl");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"n\":0}\n{\"n\":1,\"pa").unwrap();
    }
    let mut sink = FileSink::new(FileConfig::at(path.clone())).unwrap();
    assert_eq!(sink.deliver(&numbered(2..5)), Delivery::Delivered);
    drop(sink);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..2], ["{\"n\":0}", "{\"n\":1,\"pa"]);
    let later: Vec<usize> = lines[2..]
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a whole line");
            v["n"].as_u64().unwrap() as usize
        })
        .collect();
    assert_eq!(later, [2, 3, 4]);
    // A file that ends whole is left as it is.
    let before = std::fs::read(&path).unwrap();
    drop(FileSink::new(FileConfig::at(path.clone())).unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_rotation_cut_short_is_compressed_at_start_and_its_partial_backup_replaced() {
    let dir = std::env::temp_dir().join(format!("vigil-file-cut-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let create = |name: &str, text: &[u8]| {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.join(name))
            .unwrap();
        f.write_all(text).unwrap();
    };
    // A crash during the gzip: the rotated file whole, its backup cut off.
    let lines: String = (0..500).map(|n| format!("{{\"n\":{n}}}\n")).collect();
    create("events.jsonl.rotated", lines.as_bytes());
    create("events.jsonl.1.gz", &[0x1f, 0x8b, 8, 0]);
    create("events.jsonl.2.gz", b"an older backup");
    let sink = FileSink::new(FileConfig::at(dir.join("events.jsonl"))).unwrap();
    drop(sink);
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(File::open(dir.join("events.jsonl.1.gz")).unwrap()),
        &mut text,
    )
    .unwrap();
    assert_eq!(text, lines);
    assert!(!dir.join("events.jsonl.rotated").exists());
    assert_eq!(
        std::fs::read(dir.join("events.jsonl.2.gz")).unwrap(),
        b"an older backup"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_file_others_may_write_is_refused() {
    let dir = std::env::temp_dir().join(format!("vigil-file-mode-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("events.jsonl");
    std::fs::write(&path, "").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = FileSink::new(FileConfig::at(path.clone()))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("writable by group or others"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
