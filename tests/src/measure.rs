//! What the benchmarks measure processes with.

/// utime + stime of process `pid`, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process's stat");
    let rest = &stat[stat.rfind(')').expect("a comm") + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f[11] + f[12]) as f64 / tck
}

/// The median of `v` (the mean of the middle two for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// open()+close() per second of `path`, `opens` times, by a child of this benchmark run in
/// `cgroup` (or where this process is): the same binary, asked through [`open_loop_child`].
pub fn open_rate(
    cgroup: Option<&crate::pod_cgroups::ContainerCgroup>,
    path: &str,
    opens: usize,
) -> f64 {
    let exe = std::env::current_exe().expect("the benchmark's path");
    let exe = exe.to_str().expect("a UTF-8 path");
    let n = opens.to_string();
    let args = ["--open-loop", path, n.as_str()];
    let out = match cgroup {
        Some(cg) => cg.run(exe, &args),
        None => std::process::Command::new(exe)
            .args(args)
            .output()
            .expect("run the open loop"),
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a rate")
}

/// The child's side of [`open_rate`]: when this process was started as
/// `--open-loop PATH N`, it opens and closes PATH N times, prints the rate and returns true.
pub fn open_loop_child() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let (Some("--open-loop"), Some(path), Some(n)) = (
        args.get(1).map(String::as_str),
        args.get(2),
        args.get(3).and_then(|n| n.parse::<usize>().ok()),
    ) else {
        return false;
    };
    let start = std::time::Instant::now();
    for _ in 0..n {
        drop(std::fs::File::open(path).expect("open"));
    }
    println!("{}", n as f64 / start.elapsed().as_secs_f64());
    true
}
