//! `vigil-bench-rungs`: what the agent costs on each rung of the attach ladder. Here (the
//! host's rung, the open system calls' tracepoints on our machines), and in Debian's kernel
//! under qemu booted twice: as it comes (BPF LSM) and without `bpf` among its LSMs (fmod_ret on
//! security_file_open). Each place measures open()+close() of a file no policy names and of
//! `/etc/passwd` by a binary the policy does not name (every rule is walked, and the open is
//! allowed), without the agent and with it running only the deny policy; then the hot paths of
//! the host's overhead table (those opens, 64-byte writes to a file and to `/dev/null`,
//! getppid) without the agent and with the whole shipped library, and what each of the agent's
//! programs costs per run on each path (the kernel's `bpf_stats`, read by `vigil status
//! --overhead`). It prints the ratios of that one run. The VM's figures are under software
//! emulation (TCG): compare its ratios with each other, and its programs' costs with each
//! other, not with the host's.
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
/// Writes per measurement, per open.
const WRITES_PER_OPEN: usize = 2;
/// Opens per measurement: on the host; the VM's emulation is about 20 times slower.
const OPENS_HOST: usize = 200_000;
const OPENS_VM: usize = 20_000;
/// Mark the guest's result lines on the console, one per table.
const ROW: &str = "RUNG-ROW ";
const LIBRARY_ROW: &str = "LIBRARY-ROW ";
const PROGRAM_ROW: &str = "PROGRAM-ROW ";

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

/// 64-byte writes to `path` per second.
fn write_rate(path: &str, n: usize) -> f64 {
    use std::io::Write;
    // Emptied first: the loops write a few hundred MB in all.
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(path != "/dev/null")
        .open(path)
        .expect("open for writing");
    let block = [b'x'; 64];
    let start = Instant::now();
    for _ in 0..n {
        f.write_all(&block).expect("write");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// A hot path of the host's overhead table.
#[derive(Clone)]
enum HotPath {
    Open(String),
    Write(String),
    Getppid,
}

impl HotPath {
    /// The system calls one measurement over `opens` opens makes: as many writes or getppid
    /// calls as take about as long.
    fn calls(&self, opens: usize) -> usize {
        match self {
            HotPath::Open(_) => opens,
            HotPath::Write(_) => opens * WRITES_PER_OPEN,
            HotPath::Getppid => opens * 5,
        }
    }

    /// Its calls per second over a measurement of `opens` opens.
    fn rate(&self, opens: usize) -> f64 {
        let n = self.calls(opens);
        match self {
            HotPath::Open(path) => open_close_rate(path, n),
            HotPath::Write(path) => write_rate(path, n),
            HotPath::Getppid => getppid_rate(n),
        }
    }

    fn what(&self, opens: usize) -> String {
        let n = self.calls(opens);
        match self {
            HotPath::Open(path) if path == "/etc/passwd" => format!(
                "open()+close() of `/etc/passwd` by a binary the deny does not name, {n} times"
            ),
            HotPath::Open(_) => format!("open()+close() of a file no policy names, {n} times"),
            HotPath::Write(path) if path == "/dev/null" => {
                format!("64-byte write() to `/dev/null`, {n} times")
            }
            HotPath::Write(_) => {
                format!("64-byte write() to a file outside the watched directories, {n} times")
            }
            HotPath::Getppid => format!("getppid(), {n} times"),
        }
    }
}

/// Each of `paths` without the agent and with it started with `agent_args`, rounds
/// alternating, as table rows of the medians and their ratio; `rung` is set from the agent's
/// log where it names the file-open rung.
fn ratio_rows(
    paths: &[HotPath],
    agent_args: &[&str],
    opens: usize,
    rung: &mut String,
) -> Vec<String> {
    let (mut base, mut with) = (vec![vec![]; paths.len()], vec![vec![]; paths.len()]);
    for _ in 0..ROUNDS {
        for (i, p) in paths.iter().enumerate() {
            base[i].push(p.rate(opens));
        }
        let agent = Agent::start(agent_args);
        for (i, p) in paths.iter().enumerate() {
            with[i].push(p.rate(opens));
        }
        let run = agent.stop();
        if let Some(l) = run
            .stderr
            .iter()
            .find_map(|l| l.split("file-open policies enforced through ").nth(1))
        {
            *rung = l.trim().to_string();
        }
    }
    paths
        .iter()
        .zip(base.into_iter().zip(with))
        .map(|(p, (b, w))| {
            let (b, w) = (median(b), median(w));
            format!(
                "| {rung} | {} | {b:.0}/s | {w:.0}/s | {:.3} |",
                p.what(opens),
                w / b
            )
        })
        .collect()
}

/// What each of `agent`'s programs costs while `path` runs: `vigil status --overhead` over one
/// second of the loop, the programs that ran at least once per ten of the loop's calls, as
/// rows (one saying so where none did). A program's figures are its runs on every point it is
/// attached to (`vigil_kprobe` serves every hooked function), system-wide.
fn program_costs(agent: &Agent, rung: &str, path: &HotPath, opens: usize) -> Vec<String> {
    use std::sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let looping = {
        let (stop, path) = (stop.clone(), path.clone());
        std::thread::spawn(move || {
            let mut calls = 0;
            while !stop.load(Ordering::Relaxed) {
                path.rate(opens / 10);
                calls += path.calls(opens / 10);
            }
            calls
        })
    };
    // The loop stops however this ends.
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let guard = StopOnDrop(stop);
    let mut status = std::process::Command::new(vigil_tests::vigil_bin())
        .args([
            "status",
            "--overhead",
            "--interval",
            "1",
            "-o",
            "json",
            "--server",
        ])
        .arg(format!("unix://{}", agent.socket.display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run vigil status --overhead");
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while status.try_wait().expect("wait for vigil status").is_none() {
        if Instant::now() > deadline {
            let _ = status.kill();
            panic!("vigil status --overhead did not answer within 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = status.wait_with_output().expect("vigil status --overhead");
    drop(guard);
    let calls = looping.join().expect("the loop") as f64 / started.elapsed().as_secs_f64();
    assert!(out.status.success(), "vigil status --overhead: {out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("vigil status --overhead -o json: {e}: {out:?}"));
    let programs = v["programs"].as_array().cloned().unwrap_or_default();
    let mut rows: Vec<(f64, String)> = programs
        .iter()
        .filter_map(|p| {
            let runs = p["runs_per_second"].as_f64()?;
            let ns = p["ns_per_run"].as_f64()?;
            (runs >= calls / 10.0).then(|| {
                (
                    runs * ns,
                    format!(
                        "| {rung} | {} | `{}` | {runs:.0} | {ns:.0} |",
                        path.what(opens),
                        p["program"].as_str().unwrap_or("?")
                    ),
                )
            })
        })
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    if rows.is_empty() {
        return vec![format!(
            "| {rung} | {} | no program of the agent ran once per ten of the path's calls | | |",
            path.what(opens)
        )];
    }
    rows.into_iter().map(|(_, r)| r).collect()
}

/// The three tables' rows measured in one place.
#[derive(Default)]
struct Rows {
    /// Only the deny policy: the rung's own cost.
    rungs: Vec<String>,
    /// The whole shipped library, per hot path.
    library: Vec<String>,
    /// The library's programs' cost per run, per hot path.
    programs: Vec<String>,
}

impl Rows {
    fn tables(&self) -> [&Vec<String>; 3] {
        [&self.rungs, &self.library, &self.programs]
    }
}

/// Measures here and returns the tables' rows, the rung named as the agent logged it.
fn measure_here(opens: usize) -> Rows {
    let scratch = vigil_tests::TempDir::new("bench-rungs");
    let plain = scratch.path().join("plain.txt");
    std::fs::write(&plain, b"x").unwrap();
    let plain = HotPath::Open(plain.to_str().unwrap().to_string());
    let passwd = HotPath::Open("/etc/passwd".into());
    let mut rung = String::from("?");
    // A first pass warms the caches and, in the VM, the emulator's translations.
    plain.rate(opens);
    passwd.rate(opens);
    let deny = rules_dir().join("deny-credential-reads.yaml");
    let rungs = ratio_rows(
        &[plain.clone(), passwd.clone(), HotPath::Getppid],
        &["--policy", deny.to_str().unwrap()],
        opens,
        &mut rung,
    );

    // The hot paths with the whole shipped library, then each program's cost on each with the
    // kernel counting (bpf_stats adds its own clock reads, so not in the ratios' rounds).
    let written = scratch.path().join("written.txt");
    let paths = [
        plain,
        passwd,
        HotPath::Write(written.to_str().unwrap().to_string()),
        HotPath::Write("/dev/null".into()),
        HotPath::Getppid,
    ];
    let library = rules_dir();
    let library = ["--policy-dir", library.to_str().unwrap()];
    let library_rows = ratio_rows(&paths, &library, opens, &mut rung);
    let agent = Agent::start(&[library[0], library[1], "--bpf-stats"]);
    let programs = paths
        .iter()
        .flat_map(|p| program_costs(&agent, &rung, p, opens))
        .collect();
    agent.stop();
    Rows {
        rungs,
        library: library_rows,
        programs,
    }
}

/// Boots `matrix`'s kernel with this program as its one guest program and returns its rows.
fn measure_in_vm(kernel: &DebianKernel, target: &Path, matrix: Kernel, cmdline: &str) -> Rows {
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
    let rows = |mark: &str| -> Vec<String> {
        let rows: Vec<String> = run
            .output
            .lines()
            .filter_map(|l| {
                l.trim_end_matches('\r')
                    .strip_prefix(mark)
                    .map(str::to_string)
            })
            .collect();
        assert!(
            !rows.is_empty(),
            "no {mark}rows from the guest:\n{}",
            run.output
        );
        rows
    };
    Rows {
        rungs: rows(ROW),
        library: rows(LIBRARY_ROW),
        programs: rows(PROGRAM_ROW),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--test-threads=1") {
        let rows = measure_here(OPENS_VM);
        for (mark, rows) in [ROW, LIBRARY_ROW, PROGRAM_ROW].iter().zip(rows.tables()) {
            for r in rows {
                println!("{mark}{r}");
            }
        }
        // What the console parser counts as a guest program that finished.
        println!("test result: ok. 1 passed");
        return;
    }
    vigil_tests::require_root();
    let here = measure_here(OPENS_HOST);
    let exe = std::env::current_exe().unwrap();
    // target/<triple>/<profile>/vigil-bench-rungs → target/
    let target = exe.ancestors().nth(3).expect("target dir").to_path_buf();
    let kernel = DebianKernel::fetch(&target.join("vm-kernel"))
        .unwrap_or_else(|e| panic!("cannot get the VM kernel: {e}"));
    let mut places = vec![(String::from("host"), here)];
    for (matrix, cmdline) in [(DEBIAN_VM, ""), (DEBIAN_VM_NO_BPF_LSM, NO_BPF_LSM_CMDLINE)] {
        let rows = measure_in_vm(&kernel, &target, matrix, cmdline);
        places.push((
            format!("VM, emulated: {} {}", kernel.package, matrix.name),
            rows,
        ));
    }
    let heads = [
        "| rung | what | no agent | with the deny | ratio |",
        "| rung | hot path | no agent | with the shipped library | ratio |",
        "| rung | hot path (shipped library, bpf_stats on) | program | runs/s | ns per run |",
    ];
    for (table, head) in heads.iter().enumerate() {
        println!("\n{head}\n|---|---|---|---|---|");
        for (place, rows) in &places {
            for r in rows.tables()[table] {
                println!("{r} ({place})");
            }
        }
    }
}
