//! Compiles the C eBPF programs under `src/bpf/` with clang-19 (CO-RE against the running
//! kernel's BTF) and measures the C layout of the ABI header for the Rust layout tests.

use std::{
    env,
    path::{Path, PathBuf},
    process::{exit, Command},
};

const CLANG: &str = "clang-19";
const STRIP: &str = "llvm-strip-19";
const BTF: &str = "/sys/kernel/btf/vmlinux";
/// Program families linked into the agent's object, in link order.
const AGENT_FAMILIES: [&str; 5] = ["process", "policy", "hooks", "sock_hooks", "flow"];

fn main() {
    let src = Path::new("src/bpf");
    let include = src.join("include");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-env-changed=VIGIL_CLANG");

    let clang = env::var("VIGIL_CLANG").unwrap_or_else(|_| CLANG.to_string());
    if Command::new(&clang).arg("--version").output().is_err() {
        fail(&format!("{clang} not found: run `make deps` to install clang-19, llvm-19, libbpf-dev and bpftool"));
    }

    let vmlinux = out.join("vmlinux.h");
    dump_vmlinux_h(&vmlinux);

    let mut objects = Vec::new();
    for entry in std::fs::read_dir(src).expect("src/bpf exists") {
        let path = entry.expect("readable src/bpf").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".bpf.c") else {
            continue;
        };
        let obj = out.join(format!("{stem}.bpf.o"));
        run(Command::new(&clang)
            .args([
                "-target",
                "bpf",
                "-O2",
                "-g",
                "-Wall",
                "-Werror",
                "-D__TARGET_ARCH_x86",
            ])
            .arg("-I")
            .arg(&include)
            .arg("-I")
            .arg(&out)
            .arg("-c")
            .arg(&path)
            .arg("-o")
            .arg(&obj));
        // Keep .BTF and .BTF.ext (CO-RE needs them), drop the DWARF that only bloats the binary.
        let _ = Command::new(STRIP).arg("-g").arg(&obj).status();
        objects.push(stem.to_string());
    }
    objects.sort();
    assert!(!objects.is_empty(), "no *.bpf.c under src/bpf");

    // The agent's program families share maps (one ring buffer keeps events in order, one
    // scratch area), so they are linked into one object; the probe stays on its own.
    let linked: Vec<PathBuf> = AGENT_FAMILIES
        .iter()
        .map(|f| out.join(format!("{f}.bpf.o")))
        .collect();
    run(Command::new(bpftool())
        .args(["gen", "object"])
        .arg(out.join("vigil.bpf.o"))
        .args(&linked));

    write_syscall_table(&out.join("syscalls.rs"));

    let layout_bin = out.join("abi_layout");
    run(Command::new(&clang)
        .arg("-I")
        .arg(&include)
        .arg(src.join("abi_layout.c"))
        .arg("-o")
        .arg(&layout_bin));
    let layout = Command::new(&layout_bin)
        .output()
        .expect("runs the layout probe");
    assert!(layout.status.success(), "abi_layout failed");
    std::fs::write(out.join("abi_layout.rs"), layout.stdout).expect("writes abi_layout.rs");
}

/// Writes the kernel's types as C. CO-RE relocates every field access at load time, so the
/// header only has to name the fields; offsets come from the BTF of whichever kernel runs us.
fn dump_vmlinux_h(dest: &Path) {
    if !Path::new(BTF).exists() {
        fail(&format!(
            "{BTF} is missing: building vigil needs a kernel with BTF (CONFIG_DEBUG_INFO_BTF=y)"
        ));
    }
    let out = Command::new(bpftool())
        .args(["btf", "dump", "file", BTF, "format", "c"])
        .output()
        .unwrap_or_else(|e| fail(&format!("bpftool failed: {e}")));
    if !out.status.success() {
        fail(&format!(
            "bpftool btf dump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::fs::write(dest, out.stdout).expect("writes vmlinux.h");
}

/// x86-64 system call numbers (an ABI that never changes) from the kernel's UAPI header, for
/// the tracepoint fallback of syscall hooks, whose programs know only the number.
fn write_syscall_table(dest: &Path) {
    const HEADER: &str = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h";
    println!("cargo:rerun-if-changed={HEADER}");
    let text = std::fs::read_to_string(HEADER)
        .unwrap_or_else(|e| fail(&format!("{HEADER}: {e}: run `make deps` (linux-libc-dev)")));
    let mut table = String::from("/// (name without `sys_`, number) of every x86-64 system call.\npub const SYSCALLS: &[(&str, u32)] = &[\n");
    for line in text.lines() {
        let mut f = line.split_whitespace();
        if let (Some("#define"), Some(name), Some(nr)) = (f.next(), f.next(), f.next()) {
            if let (Some(name), Ok(nr)) = (name.strip_prefix("__NR_"), nr.parse::<u32>()) {
                table.push_str(&format!("    (\"{name}\", {nr}),\n"));
            }
        }
    }
    table.push_str("];\n");
    std::fs::write(dest, table).expect("writes syscalls.rs");
}

fn bpftool() -> &'static str {
    ["bpftool", "/usr/sbin/bpftool"]
        .into_iter()
        .find(|b| Command::new(b).arg("version").output().is_ok())
        .unwrap_or_else(|| fail("bpftool not found: run `make deps`"))
}

fn run(cmd: &mut Command) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| fail(&format!("{cmd:?}: {e}")));
    if !status.success() {
        fail(&format!("{cmd:?} failed with {status}"));
    }
}

fn fail(msg: &str) -> ! {
    println!("cargo:warning={msg}");
    eprintln!("error: {msg}");
    exit(1)
}
