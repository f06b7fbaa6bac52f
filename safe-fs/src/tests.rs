//! Each refusal, tried the way a local user would set it up.

use super::*;
use std::{io::Write, os::unix::fs::PermissionsExt};

struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("vigil-safe-fs-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn a_planted_symlink_is_refused_and_its_target_is_unchanged() {
    let s = Scratch::new("link");
    let target = s.0.join("precious");
    std::fs::write(&target, "keep me").unwrap();
    std::os::unix::fs::symlink(&target, s.0.join("events.jsonl")).unwrap();
    let dir = TrustedDir::open(&s.0).unwrap();
    let e = dir.open_append("events.jsonl", 0o600).unwrap_err();
    assert!(matches!(e, FsError::Symlink { .. }), "{e}");
    assert!(e.to_string().contains("events.jsonl"), "{e}");
    assert!(matches!(
        dir.check_entry("events.jsonl"),
        Err(FsError::Symlink { .. })
    ));
    assert!(matches!(
        dir.create_new("events.jsonl", 0o600),
        Err(FsError::Exists { .. })
    ));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
}

#[test]
fn a_symlinked_directory_on_the_way_is_refused_where_it_is_walked() {
    let s = Scratch::new("dirlink");
    std::fs::create_dir(s.0.join("real")).unwrap();
    std::os::unix::fs::symlink(s.0.join("real"), s.0.join("spool")).unwrap();
    let parent = TrustedDir::open(&s.0).unwrap();
    let e = parent.sub_dir("spool", true).unwrap_err();
    assert!(matches!(e, FsError::Symlink { .. }), "{e}");
}

#[test]
fn a_fifo_at_the_name_does_not_hang_the_open() {
    let s = Scratch::new("fifo");
    let c = CString::new(s.0.join("events.jsonl").as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let dir = TrustedDir::open(&s.0).unwrap();
    let e = dir.open_append("events.jsonl", 0o600).unwrap_err();
    assert!(
        matches!(e, FsError::WrongType { kind: "a FIFO", .. }),
        "{e}"
    );
    let e = dir.open_read("events.jsonl").unwrap_err();
    assert!(
        matches!(e, FsError::WrongType { kind: "a FIFO", .. }),
        "{e}"
    );
}

#[test]
fn new_files_are_created_with_the_mode_asked_and_appended_to() {
    let s = Scratch::new("append");
    let dir = TrustedDir::open(&s.0).unwrap();
    dir.open_append("a", 0o600)
        .unwrap()
        .write_all(b"one\n")
        .unwrap();
    dir.open_append("a", 0o600)
        .unwrap()
        .write_all(b"two\n")
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(s.0.join("a")).unwrap(),
        "one\ntwo\n"
    );
    let mode = std::fs::metadata(s.0.join("a"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    dir.rename("a", "b").unwrap();
    assert!(!dir.check_entry("a").unwrap() && dir.check_entry("b").unwrap());
    assert_eq!(dir.size("b").unwrap(), 8);
    dir.remove("b").unwrap();
    dir.remove("b").unwrap();
    assert!(dir.file_names().unwrap().is_empty());
}

#[test]
fn missing_directories_are_created_private() {
    let s = Scratch::new("mkdir");
    let deep = s.0.join("x/y/z");
    let dir = TrustedDir::create(&deep).unwrap();
    assert_eq!(dir.path(), std::fs::canonicalize(&deep).unwrap());
    for d in ["x", "x/y", "x/y/z"] {
        let mode = std::fs::metadata(s.0.join(d)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{d}");
    }
    assert!(TrustedDir::open(&s.0.join("nope"))
        .unwrap_err()
        .is_not_found());
}

#[test]
fn a_world_writable_directory_is_refused_unless_sticky() {
    let s = Scratch::new("ww");
    let d = s.0.join("open");
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = TrustedDir::open(&d).unwrap_err();
    assert!(matches!(e, FsError::Writable { mode: 0o777, .. }), "{e}");
    assert!(e.to_string().contains("chmod go-w"), "{e}");
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
    TrustedDir::open(&d).unwrap();
}

#[test]
fn a_file_another_user_owns_or_may_write_is_refused() {
    assert!(
        is_root(),
        "this test chowns a file to nobody: run it as root (make test does)"
    );
    let s = Scratch::new("owner");
    let f = s.0.join("events.jsonl");
    std::fs::write(&f, "").unwrap();
    std::os::unix::fs::chown(&f, Some(65534), None).unwrap();
    let dir = TrustedDir::open(&s.0).unwrap();
    let e = dir.open_append("events.jsonl", 0o600).unwrap_err();
    assert!(matches!(e, FsError::ForeignOwner { uid: 65534, .. }), "{e}");
    std::os::unix::fs::chown(&f, Some(0), None).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
    let e = dir.open_append("events.jsonl", 0o600).unwrap_err();
    assert!(matches!(e, FsError::Writable { .. }), "{e}");
}

#[test]
fn a_hard_link_to_another_file_is_not_appended_to() {
    let s = Scratch::new("hardlink");
    std::fs::write(s.0.join("shadow"), "root:x").unwrap();
    std::fs::hard_link(s.0.join("shadow"), s.0.join("events.jsonl")).unwrap();
    let dir = TrustedDir::open(&s.0).unwrap();
    let e = dir.open_append("events.jsonl", 0o600).unwrap_err();
    assert!(matches!(e, FsError::HardLinked { links: 2, .. }), "{e}");
    assert_eq!(
        std::fs::read_to_string(s.0.join("shadow")).unwrap(),
        "root:x"
    );
}

#[test]
fn names_that_leave_the_directory_are_refused() {
    let s = Scratch::new("names");
    let dir = TrustedDir::open(&s.0).unwrap();
    for bad in ["", ".", "..", "a/b", "a\0b"] {
        assert!(
            matches!(dir.open_append(bad, 0o600), Err(FsError::BadName { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn inputs_are_read_through_links_but_only_when_trusted_and_small() {
    let s = Scratch::new("read");
    let f = s.0.join("policy.yaml");
    std::fs::write(&f, "kind: TracingPolicy\n").unwrap();
    std::os::unix::fs::symlink(&f, s.0.join("link.yaml")).unwrap();
    assert_eq!(
        read_trusted(&s.0.join("link.yaml"), 100).unwrap(),
        "kind: TracingPolicy\n"
    );
    let e = read_trusted(&f, 5).unwrap_err();
    assert!(
        matches!(
            e,
            FsError::TooLarge {
                size: 20,
                limit: 5,
                ..
            }
        ),
        "{e}"
    );
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
    let e = read_trusted(&s.0.join("link.yaml"), 100).unwrap_err();
    assert!(matches!(e, FsError::Writable { .. }), "{e}");
    assert!(
        e.to_string().contains("link.yaml"),
        "names the file as given: {e}"
    );
}

#[test]
fn a_large_input_is_refused_without_reading_it() {
    let s = Scratch::new("big");
    let f = s.0.join("big.yaml");
    // Sparse: 100 MiB that takes no disk and would take time to read.
    std::fs::File::create(&f)
        .unwrap()
        .set_len(100 << 20)
        .unwrap();
    let t = std::time::Instant::now();
    let e = read_trusted(&f, 1 << 20).unwrap_err();
    assert!(matches!(e, FsError::TooLarge { .. }), "{e}");
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn open_append_creates_the_parent_directories() {
    let s = Scratch::new("path");
    let p = s.0.join("out/events.jsonl");
    open_append(&p, 0o600).unwrap().write_all(b"x").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"x");
}

#[test]
fn no_file_is_written_in_a_directory_others_may_create_names_in() {
    let s = Scratch::new("sticky");
    let d = s.0.join("shared");
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let dir = TrustedDir::open(&d).unwrap();
    for e in [
        dir.open_append("events.jsonl", 0o600).unwrap_err(),
        dir.create_new("events.jsonl.1.gz", 0o600).unwrap_err(),
        open_append(&d.join("events.jsonl"), 0o600).unwrap_err(),
    ] {
        assert!(matches!(e, FsError::SharedDir { mode: 0o1777, .. }), "{e}");
        assert!(e.to_string().contains("only root can write"), "{e}");
    }
    assert!(!d.join("events.jsonl").exists());
    // A private directory made in it is vigil's alone: files live there.
    let own = TrustedDir::create(&d.join("vigil/spool")).unwrap();
    own.open_append("seg", 0o600).unwrap();
}
