//! `vigil-bench-rungs`: what the shipped file-open deny costs on each rung of the attach
//! ladder. Here (the host's rung, the open system calls' tracepoints on our machines), and
//! in Debian's kernel under qemu booted twice: as it comes (BPF LSM) and without `bpf` among
//! its LSMs (fmod_ret on security_file_open). Each place measures open()+close() of a file no
//! policy names and of `/etc/passwd` by a binary the policy does not name (every rule is
//! walked, and the open is allowed), without the agent and with it running only the deny
//! policy, and prints the ratios of that one run. The VM's figures are under software
//! emulation: compare its ratios with each other, not its rates with the host's.
//!
//! Run inside the VM, it gets `--test-threads=1` (as every guest program does) and measures
//! there.

use std::{path::Path, time::Instant};

use vigil_tests::{
    kernels::{Kernel, DEBIAN_VM, DEBIAN_VM_NO_BPF_LSM},
    measure::median,
    rules_dir,
    vm::{boot, parse_console, DebianKernel, Initramfs, NO_BPF_LSM_CMDLINE},
    Agent,
};

const ROUNDS: usize = 3;
/// Opens per measurement: on the host; the VM's emulation is about 20 times slower.
const OPENS_HOST: usize = 200_000;
const OPENS_VM: usize = 20_000;
/// Marks the guest's result lines on the console.
const ROW: &str = "RUNG-ROW ";

/// getppid() per second: a system call no policy names, whose return still passes every
/// program on the system calls' return path (on the tracepoint rung, the raw sys_exit one for
/// 32-bit opens).
fn getppid_rate(n: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        // SAFETY: getppid has no preconditions.
        std::hint::black_box(unsafe { libc::getppid() });
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn open_close_rate(path: &str, n: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        drop(std::fs::File::open(path).expect("open"));
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Measures here and returns the table rows, the rung named as the agent logged it.
fn measure_here(opens: usize) -> Vec<String> {
    let scratch = vigil_tests::TempDir::new("bench-rungs");
    let plain = scratch.path().join("plain.txt");
    std::fs::write(&plain, b"x").unwrap();
    let plain = plain.to_str().unwrap().to_string();
    let policy = rules_dir().join("deny-credential-reads.yaml");
    let (mut base_plain, mut base_passwd, mut with_plain, mut with_passwd) =
        (vec![], vec![], vec![], vec![]);
    let (mut base_ppid, mut with_ppid) = (vec![], vec![]);
    let mut rung = String::from("?");
    // A first pass warms the caches and, in the VM, the emulator's translations.
    open_close_rate(&plain, opens);
    open_close_rate("/etc/passwd", opens);
    for _ in 0..ROUNDS {
        base_plain.push(open_close_rate(&plain, opens));
        base_passwd.push(open_close_rate("/etc/passwd", opens));
        base_ppid.push(getppid_rate(opens * 5));
        let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
        with_plain.push(open_close_rate(&plain, opens));
        with_passwd.push(open_close_rate("/etc/passwd", opens));
        with_ppid.push(getppid_rate(opens * 5));
        let run = agent.stop();
        if let Some(l) = run
            .stderr
            .iter()
            .find_map(|l| l.split("file-open policies enforced through ").nth(1))
        {
            rung = l.trim().to_string();
        }
    }
    let row = |what: &str, base: &[f64], with: &[f64]| {
        let (b, w) = (median(base.to_vec()), median(with.to_vec()));
        format!("| {rung} | {what} | {b:.0}/s | {w:.0}/s | {:.3} |", w / b)
    };
    vec![
        row(
            &format!("open()+close() of a file no policy names, {opens} times"),
            &base_plain,
            &with_plain,
        ),
        row(
            &format!(
                "open()+close() of `/etc/passwd` by a binary the deny does not name, {opens} times"
            ),
            &base_passwd,
            &with_passwd,
        ),
        row(
            &format!("getppid(), {} times", opens * 5),
            &base_ppid,
            &with_ppid,
        ),
    ]
}

/// Boots `matrix`'s kernel with this program as its one guest program and returns its rows.
fn measure_in_vm(
    kernel: &DebianKernel,
    target: &Path,
    matrix: Kernel,
    cmdline: &str,
) -> Vec<String> {
    let me = std::env::current_exe().unwrap();
    let mut fs = Initramfs::new(&target.join(format!("vm-root-bench-{}", matrix.name)))
        .unwrap_or_else(|e| panic!("{e}"));
    fs.add_binary(&vigil_tests::vigil_bin(), "vigil").unwrap();
    fs.add_scenario(&me, "vigil-bench-rungs").unwrap();
    let policies = rules_dir();
    for entry in std::fs::read_dir(&policies).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        fs.add_file(&p, &format!("vigil/rules/policies/{name}"))
            .unwrap();
    }
    let initramfs = target.join(format!("vm-initramfs-bench-{}.gz", matrix.name));
    fs.pack(matrix.name, &initramfs)
        .unwrap_or_else(|e| panic!("{e}"));
    let serial = target.join(format!("vm-ttyS1-bench-{}", matrix.name));
    let console = boot(
        kernel,
        &initramfs,
        std::time::Duration::from_secs(600),
        &serial,
        cmdline,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (runs, _) = parse_console(&console);
    let run = runs
        .iter()
        .find(|r| r.name == "vigil-bench-rungs")
        .unwrap_or_else(|| panic!("the guest never ran the bench:\n{console}"));
    let rows: Vec<String> = run
        .output
        .lines()
        .filter_map(|l| {
            l.trim_end_matches('\r')
                .strip_prefix(ROW)
                .map(str::to_string)
        })
        .collect();
    assert!(!rows.is_empty(), "no rows from the guest:\n{}", run.output);
    rows
}

fn main() {
    if std::env::args().any(|a| a == "--test-threads=1") {
        for r in measure_here(OPENS_VM) {
            println!("{ROW}{r}");
        }
        // What the console parser counts as a guest program that finished.
        println!("test result: ok. 1 passed");
        return;
    }
    vigil_tests::require_root();
    println!("| rung | what | no agent | with the deny | ratio |");
    println!("|---|---|---|---|---|");
    for r in measure_here(OPENS_HOST) {
        println!("{r}");
    }
    let exe = std::env::current_exe().unwrap();
    // target/<triple>/<profile>/vigil-bench-rungs → target/
    let target = exe.ancestors().nth(3).expect("target dir").to_path_buf();
    let kernel = DebianKernel::fetch(&target.join("vm-kernel"))
        .unwrap_or_else(|e| panic!("cannot get the VM kernel: {e}"));
    for (matrix, cmdline) in [(DEBIAN_VM, ""), (DEBIAN_VM_NO_BPF_LSM, NO_BPF_LSM_CMDLINE)] {
        for r in measure_in_vm(&kernel, &target, matrix, cmdline) {
            println!("{r} (VM, {} {})", kernel.package, matrix.name);
        }
    }
}
