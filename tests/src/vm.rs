//! Booting Debian's own kernel under qemu to run the scenarios where the host kernel refuses
//! hooks (kprobe, fentry, LSM).
//!
//! [`DebianKernel::fetch`] takes the kernel that `linux-image-cloud-amd64` currently depends
//! on from Debian's archive (`apt-get download`), so a new point release does not break the
//! tests, and caches it under the build directory with its version. [`Initramfs`] packs
//! busybox, the static agent and the static scenario binaries with an `/init` that runs them
//! (and, from the same package, the few modules of [`GUEST_MODULES`] that scenarios load);
//! [`boot`] runs qemu (software emulation: nested KVM does not work on our machines) and
//! returns the serial console. Scenario output on the console is framed by
//! [`BEGIN`]/[`END`] lines so the matrix test can show a failing scenario's part alone.
//!
//! The events the scenarios' agents wrote in the guest come back on a second serial port, which
//! the kernel has built in (no driver to load): `/init` writes the guest's event archive there,
//! gzipped and base64-encoded, and [`read_guest_events`] decodes it on the host.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// The Debian metapackage whose dependency is the current cloud kernel.
pub const KERNEL_META: &str = "linux-image-cloud-amd64";
/// Console line opening a scenario's output: `VIGIL-BEGIN <name>`.
pub const BEGIN: &str = "VIGIL-BEGIN";
/// Console line closing it: `VIGIL-END <name> rc=<exit code>`.
pub const END: &str = "VIGIL-END";
/// Console line after the last scenario.
pub const DONE: &str = "VIGIL-VM-DONE";
/// Where the guest's scenarios archive their agents' events (tests/src/lib.rs).
const GUEST_ARCHIVE: &str = "/tmp/events.jsonl";
/// Console line with the number of lines the guest archived: `VIGIL-EVENTS <n>`.
pub const EVENTS_LINE: &str = "VIGIL-EVENTS";

/// The number of event lines the guest said it archived, from its console.
pub fn guest_event_count(console: &str) -> Option<usize> {
    console
        .lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix(EVENTS_LINE))
        .and_then(|n| n.trim().parse().ok())
}

/// A Debian kernel image ready to boot.
#[derive(Debug, Clone)]
pub struct DebianKernel {
    /// Package name, e.g. `linux-image-6.1.0-56-cloud-amd64`.
    pub package: String,
    /// Package version, e.g. `6.1.192-2`.
    pub version: String,
    /// The bzImage.
    pub vmlinuz: PathBuf,
    /// The modules of [`GUEST_MODULES`], as `<release>/kernel/...`: what the guest's
    /// `/lib/modules` holds.
    pub modules: PathBuf,
}

/// The kernel modules the image carries from the same package, at their paths under
/// `/lib/modules/<release>/`: scenarios load them to see the module hooks fire.
pub const GUEST_MODULES: [&str; 24] = [
    "kernel/drivers/net/dummy.ko",
    // The encryption scenario's links and tunnels (tests/src/links.rs), in load order.
    "kernel/drivers/net/veth.ko",
    "kernel/drivers/net/tun.ko",
    "kernel/lib/crypto/libcurve25519-generic.ko",
    "kernel/net/ipv4/udp_tunnel.ko",
    "kernel/net/ipv6/ip6_udp_tunnel.ko",
    "kernel/arch/x86/crypto/poly1305-x86_64.ko",
    "kernel/lib/crypto/libchacha.ko",
    "kernel/arch/x86/crypto/chacha-x86_64.ko",
    "kernel/lib/crypto/libchacha20poly1305.ko",
    "kernel/arch/x86/crypto/curve25519-x86_64.ko",
    "kernel/drivers/net/wireguard/wireguard.ko",
    "kernel/net/xfrm/xfrm_algo.ko",
    "kernel/net/xfrm/xfrm_user.ko",
    "kernel/net/ipv4/esp4.ko",
    "kernel/crypto/gf128mul.ko",
    "kernel/crypto/ghash-generic.ko",
    "kernel/crypto/gcm.ko",
    "kernel/crypto/ctr.ko",
    // jitterentropy_rng asks for SHA3-256 when it loads; the guest has no modprobe to fetch it.
    "kernel/crypto/sha3_generic.ko",
    "kernel/crypto/jitterentropy_rng.ko",
    "kernel/crypto/drbg.ko",
    "kernel/crypto/seqiv.ko",
    "kernel/drivers/net/vxlan/vxlan.ko",
];

/// Whether `modules` holds every one of [`GUEST_MODULES`] for some release.
fn has_guest_modules(modules: &Path) -> bool {
    std::fs::read_dir(modules).is_ok_and(|releases| {
        releases
            .filter_map(|e| e.ok())
            .any(|r| GUEST_MODULES.iter().all(|m| r.path().join(m).is_file()))
    })
}

fn run_ok(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The package `linux-image-cloud-amd64` depends on now.
fn current_kernel_package() -> Result<String, String> {
    let parse = |text: &str| {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("Depends: "))
            .find(|d| d.starts_with("linux-image-"))
            .map(str::to_string)
    };
    let depends = || run_ok(Command::new("apt-cache").args(["depends", KERNEL_META]));
    if let Some(p) = depends().ok().as_deref().and_then(parse) {
        return Ok(p);
    }
    // A machine whose package lists were never fetched knows no packages yet.
    run_ok(Command::new("apt-get").args(["update", "-qq"]))?;
    parse(&depends()?)
        .ok_or_else(|| format!("apt-cache depends {KERNEL_META} names no linux-image package"))
}

impl DebianKernel {
    /// The current Debian cloud kernel, from `cache` or downloaded into it.
    pub fn fetch(cache: &Path) -> Result<DebianKernel, String> {
        let package = current_kernel_package()?;
        let dir = cache.join(&package);
        let vmlinuz = dir.join("vmlinuz");
        let version_file = dir.join("VERSION");
        let modules = dir.join("modules");
        if vmlinuz.is_file() && has_guest_modules(&modules) {
            if let Ok(version) = std::fs::read_to_string(&version_file) {
                return Ok(DebianKernel {
                    package,
                    version: version.trim().to_string(),
                    vmlinuz,
                    modules,
                });
            }
        }
        // Everything is unpacked and staged beside the cache and renamed into place at the end:
        // a download cut short leaves no cache that looks complete.
        let work = cache.join(format!("download-{}", std::process::id()));
        let work =
            crate::TempDir::at(work.clone()).map_err(|e| format!("{}: {e}", work.display()))?;
        run_ok(
            Command::new("apt-get")
                .args(["download", &package])
                .current_dir(work.path()),
        )?;
        let deb = std::fs::read_dir(work.path())
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .ok_or_else(|| format!("apt-get download {package} left no .deb"))?;
        let version = run_ok(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Version"))?
            .trim()
            .to_string();
        let unpacked = work.path().join("x");
        run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
        let image = std::fs::read_dir(unpacked.join("boot"))
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
            })
            .ok_or_else(|| format!("{package} has no /boot/vmlinuz-*"))?;
        let release = image
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("vmlinuz-"))
            .ok_or_else(|| format!("{}: no release in its name", image.display()))?;
        let staged = work.path().join("staged");
        std::fs::create_dir_all(&staged).map_err(|e| e.to_string())?;
        std::fs::copy(&image, staged.join("vmlinuz")).map_err(|e| e.to_string())?;
        for m in GUEST_MODULES {
            // Where the package keeps its modules: /lib/modules, or /usr/lib/modules once the
            // distribution merged /lib into /usr.
            let from = ["lib/modules", "usr/lib/modules"]
                .iter()
                .map(|d| unpacked.join(d).join(release).join(m))
                .find(|p| p.is_file())
                .ok_or_else(|| format!("{package} has no {m} for {release}"))?;
            let to = staged.join("modules").join(release).join(m);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            std::fs::copy(&from, &to).map_err(|e| format!("{}: {e}", from.display()))?;
        }
        std::fs::write(staged.join("VERSION"), &version).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&staged, &dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(DebianKernel {
            package,
            version,
            vmlinuz,
            modules,
        })
    }
}

/// An initramfs being assembled in a staging directory.
pub struct Initramfs {
    root: PathBuf,
    scenarios: Vec<String>,
    keep_events: bool,
}

impl Initramfs {
    /// A staging tree at `root` (emptied) with busybox installed.
    pub fn new(root: &Path) -> Result<Initramfs, String> {
        let _ = std::fs::remove_dir_all(root);
        for d in ["bin", "proc", "sys", "dev", "tmp", "vigil", "etc"] {
            std::fs::create_dir_all(root.join(d)).map_err(|e| e.to_string())?;
        }
        // The files the file-policy scenarios read and protect.
        for (name, text) in [
            (
                "etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
            ),
            ("etc/shadow", "root:*:19000:0:99999:7:::\n"),
            ("etc/hostname", "vigil-vm\n"),
        ] {
            std::fs::write(root.join(name), text).map_err(|e| e.to_string())?;
        }
        let busybox = Path::new("/bin/busybox");
        if !busybox.is_file() {
            return Err("/bin/busybox is missing: install busybox-static (make test does)".into());
        }
        std::fs::copy(busybox, root.join("bin/busybox")).map_err(|e| e.to_string())?;
        // A real file at /usr/bin/cat (busybox picks the applet from its name), so policies that
        // name distribution paths match here as on a distribution.
        std::fs::create_dir_all(root.join("usr/bin")).map_err(|e| e.to_string())?;
        std::fs::copy(busybox, root.join("usr/bin/cat")).map_err(|e| e.to_string())?;
        Ok(Initramfs {
            root: root.to_path_buf(),
            scenarios: Vec::new(),
            keep_events: false,
        })
    }

    /// Has the scenarios archive their agents' events and `/init` send the archive to the
    /// second serial port after the last scenario (see [`boot`] and [`read_guest_events`]).
    pub fn keep_events(&mut self) {
        self.keep_events = true;
    }

    /// Copies a static binary to `/vigil/<name>`.
    pub fn add_binary(&mut self, src: &Path, name: &str) -> Result<(), String> {
        std::fs::copy(src, self.root.join("vigil").join(name))
            .map_err(|e| format!("{}: {e}", src.display()))?;
        Ok(())
    }

    /// Copies a data file to `dest` (relative to the root).
    pub fn add_file(&mut self, src: &Path, dest: &str) -> Result<(), String> {
        let to = self.root.join(dest);
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::copy(src, &to).map_err(|e| format!("{}: {e}", src.display()))?;
        Ok(())
    }

    /// Copies a dynamically linked program of this machine to the same path in the guest, with
    /// every library `ldd` says it loads (at their paths, the dynamic linker included), so the
    /// guest runs the system's own build of it: what a uprobe scenario hooks.
    pub fn add_dynamic(&mut self, program: &Path) -> Result<(), String> {
        let out = run_ok(Command::new("ldd").arg(program))?;
        let mut files = vec![program.to_path_buf()];
        for line in out.lines() {
            // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or `/lib64/ld-linux-x86-64.so.2 (0x...)`
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(p) = path.filter(|p| p.starts_with('/')) {
                files.push(PathBuf::from(p));
            }
        }
        let relative = |p: &Path| -> Result<String, String> {
            p.to_str()
                .and_then(|s| s.strip_prefix('/'))
                .map(str::to_string)
                .ok_or_else(|| format!("{}: not an absolute path", p.display()))
        };
        for f in files {
            // One file per library, at its real path, and a link where the program names it
            // (Debian's /lib leads to /usr/lib): a copy at each would be two files, and a
            // uprobe on one would not see the program that loaded the other.
            let real = std::fs::canonicalize(&f).map_err(|e| format!("{}: {e}", f.display()))?;
            self.add_file(&real, &relative(&real)?)?;
            if real != f {
                let link = self.root.join(relative(&f)?);
                if let Some(dir) = link.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
                }
                let _ = std::fs::remove_file(&link);
                std::os::unix::fs::symlink(&real, &link)
                    .map_err(|e| format!("{}: {e}", link.display()))?;
            }
        }
        Ok(())
    }

    /// Adds a scenario binary, run by `/init` in the order added.
    pub fn add_scenario(&mut self, src: &Path, name: &str) -> Result<(), String> {
        self.add_binary(src, name)?;
        self.scenarios.push(name.to_string());
        Ok(())
    }

    /// Writes `/init` and packs the tree into `out` (cpio newc, gzip).
    pub fn pack(&self, kernel_name: &str, out: &Path) -> Result<(), String> {
        let mut init = String::from(
            "#!/bin/busybox sh\n\
             /bin/busybox --install -s /bin\n\
             mount -t proc proc /proc\n\
             mount -t sysfs sysfs /sys\n\
             mount -t devtmpfs devtmpfs /dev\n\
             mkdir -p /dev/pts\n\
             mount -t devpts devpts /dev/pts\n\
             mount -t tmpfs tmpfs /tmp\n\
             hostname vigil-vm\n\
             ip link set lo up\n\
             cd /tmp\n",
        );
        init.push_str(&format!(
            "export VIGIL_BIN=/vigil/vigil VIGIL_RULES_DIR=/vigil/rules/policies VIGIL_BROKEN_DIR=/vigil/broken VIGIL_TETRAGON_DIR=/vigil/tetragon VIGIL_SIGMA_DIR=/vigil/sigma {}={kernel_name} {}=/tmp/skips\n",
            crate::kernels::KERNEL_ENV,
            crate::kernels::SKIP_LOG_ENV
        ));
        if self.keep_events {
            init.push_str(&format!(
                "export {}={GUEST_ARCHIVE}\n",
                crate::EVENT_ARCHIVE_VAR
            ));
        }
        // Debugging aids from the host: the verifier's full log, one test by name.
        if std::env::var_os("VIGIL_DEBUG").is_some() {
            init.push_str("export VIGIL_DEBUG=1\n");
        }
        let filter = std::env::var("VIGIL_VM_FILTER").unwrap_or_default();
        for s in &self.scenarios {
            init.push_str(&format!(
                "echo {BEGIN} {s}\n/vigil/{s} --test-threads=1 {filter} 2>&1\necho {END} {s} rc=$?\n"
            ));
        }
        if self.keep_events {
            // gzip's trailer lets the host tell a complete archive from one cut short.
            init.push_str(&format!(
                "touch {GUEST_ARCHIVE}\necho {EVENTS_LINE} $(wc -l < {GUEST_ARCHIVE})\ngzip -c {GUEST_ARCHIVE} | base64 > /dev/ttyS1\n"
            ));
        }
        init.push_str(&format!("echo SKIPS-BEGIN\ncat /tmp/skips 2>/dev/null\necho SKIPS-END\necho {DONE}\npoweroff -f\n"));
        let init_path = self.root.join("init");
        std::fs::write(&init_path, init).map_err(|e| e.to_string())?;
        run_ok(Command::new("chmod").arg("755").arg(&init_path))?;
        let script = format!(
            "find . | cpio -o -H newc --quiet | gzip -1 > '{}'",
            out.display()
        );
        run_ok(
            Command::new("sh")
                .arg("-c")
                .arg(script)
                .current_dir(&self.root),
        )?;
        Ok(())
    }
}

/// The kernel command line's LSMs for a boot without BPF LSM: Debian's list without `bpf`, so
/// file opens are denied through fmod_ret; and every kernel message on the console, so that a
/// warning there (a stall, a lockup) comes with its stack.
pub const NO_BPF_LSM_CMDLINE: &str = "lsm=landlock,lockdown,yama,integrity,apparmor loglevel=7";

/// Boots `kernel` with `initramfs` under qemu (software emulation) and returns the serial
/// console once the guest powers off, or an error with the console so far after `limit`. The
/// guest's second serial port (`/dev/ttyS1`) is written to `second_serial`.
pub fn boot(
    kernel: &DebianKernel,
    initramfs: &Path,
    limit: Duration,
    second_serial: &Path,
    cmdline: &str,
) -> Result<String, String> {
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-serial", "mon:stdio", "-serial"])
        .arg(format!("file:{}", second_serial.display()))
        // One host thread runs both virtual CPUs in turn. With a thread each, the guest's two
        // CPUs sometimes spun for good at the site the kernel was patching (a tracepoint's
        // static key or a BPF trampoline, text_poke's sync_core IPI in both stacks: soft lockups
        // on both CPUs, the boot hung), in the scenarios that attach and detach the most
        // programs while other threads make syscalls (persistence); that is emulation, not the
        // kernel, which patches its text the same way on real CPUs.
        .args([
            "-accel",
            "tcg,thread=single",
            "-smp",
            "2",
            "-m",
            "1536",
            "-nographic",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(initramfs)
        .arg("-append")
        .arg(format!("console=ttyS0 panic=-1 quiet {cmdline}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start qemu-system-x86_64 ({e}): install qemu-system-x86 (make test does)"
            )
        })?;
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let console = reader.join().unwrap_or_default();
            if !status.success() {
                let mut err = String::new();
                let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
                return Err(format!("qemu exited with {status}: {err}\n{console}"));
            }
            return Ok(console);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let console = reader.join().unwrap_or_default();
            return Err(format!(
                "the VM did not power off within {limit:?}; console so far:\n{console}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The events the guest's scenarios archived, as JSON lines, from what `/init` wrote to the
/// second serial port (base64 of a gzip stream; the terminal adds carriage returns).
pub fn read_guest_events(second_serial: &Path) -> Result<String, String> {
    use base64::Engine;
    let text = std::fs::read_to_string(second_serial)
        .map_err(|e| format!("{}: {e}", second_serial.display()))?;
    let b64: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let gz = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("{}: not base64 ({e})", second_serial.display()))?;
    let mut events = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut events)
        .map_err(|e| {
            format!(
                "{}: the guest's event archive is cut short or damaged ({e}; {} bytes of gzip)",
                second_serial.display(),
                gz.len()
            )
        })?;
    Ok(events)
}

/// One scenario's part of the console.
#[derive(Debug)]
pub struct ScenarioRun {
    /// Scenario (test binary) name.
    pub name: String,
    /// Its exit code, if it finished.
    pub rc: Option<i32>,
    /// Its console lines.
    pub output: String,
}

/// Splits a console into scenario runs and the skip lines.
pub fn parse_console(console: &str) -> (Vec<ScenarioRun>, Vec<String>) {
    let mut runs = Vec::new();
    let mut skips = Vec::new();
    let mut current: Option<ScenarioRun> = None;
    let mut in_skips = false;
    for raw in console.lines() {
        let line = raw.trim_end_matches('\r');
        // Firmware and terminal escapes can share the first marker's line.
        if let Some(name) = line.find(BEGIN).map(|i| line[i + BEGIN.len()..].trim()) {
            current = Some(ScenarioRun {
                name: name.to_string(),
                rc: None,
                output: String::new(),
            });
        } else if let Some(rest) = line.strip_prefix(END) {
            if let Some(mut run) = current.take() {
                run.rc = rest
                    .rsplit("rc=")
                    .next()
                    .and_then(|r| r.trim().parse().ok());
                runs.push(run);
            }
        } else if line == "SKIPS-BEGIN" {
            in_skips = true;
        } else if line == "SKIPS-END" {
            in_skips = false;
        } else if in_skips {
            if !line.trim().is_empty() {
                skips.push(line.to_string());
            }
        } else if let Some(run) = current.as_mut() {
            run.output.push_str(line);
            run.output.push('\n');
        }
    }
    if let Some(run) = current {
        runs.push(run); // started but never finished: rc stays None
    }
    (runs, skips)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_is_split_into_scenarios_and_skips() {
        let console = "boot noise\n\x1b[2JVIGIL-BEGIN a\ntest x ... ok\nVIGIL-END a rc=0\nVIGIL-BEGIN b\npanic\n\
                       VIGIL-END b rc=101\nSKIPS-BEGIN\nSKIP t on debian-vm: needs lsm\nSKIPS-END\nVIGIL-VM-DONE\n";
        let (runs, skips) = parse_console(console);
        assert_eq!(runs.len(), 2);
        assert_eq!((runs[0].name.as_str(), runs[0].rc), ("a", Some(0)));
        assert_eq!(runs[0].output, "test x ... ok\n");
        assert_eq!(runs[1].rc, Some(101));
        assert_eq!(skips, vec!["SKIP t on debian-vm: needs lsm"]);
    }

    #[test]
    fn the_guest_s_events_are_read_back_and_a_cut_archive_is_an_error() {
        use base64::Engine;
        use std::io::Write;
        let events = "{\"process_exec\":{}}\n".repeat(500);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(events.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&gz);
        // base64 wraps its lines; the guest's terminal turns each newline into CR LF.
        let wrapped: Vec<String> = b64
            .as_bytes()
            .chunks(76)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        let dir = std::env::temp_dir().join(format!("vigil-vm-serial-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let serial = dir.join("ttyS1");
        std::fs::write(&serial, wrapped.join("\r\n") + "\r\n").unwrap();
        assert_eq!(read_guest_events(&serial).unwrap(), events);
        let cut = &b64[..b64.len() - 8];
        std::fs::write(&serial, cut).unwrap();
        let err = read_guest_events(&serial).unwrap_err();
        assert!(err.contains("cut short"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_scenario_cut_short_has_no_exit_code() {
        let (runs, _) = parse_console("VIGIL-BEGIN a\nKernel panic\n");
        assert_eq!(runs[0].rc, None);
    }
}
