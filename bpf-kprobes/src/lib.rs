//! vigil's in-kernel programs and the Rust side of their ABI.
//!
//! The programs are C with CO-RE under `src/bpf/`, one program family per file:
//! `process.bpf.c` captures exec, fork and exit from raw tracepoints; `policy.bpf.c` is the
//! file-open evaluator (BPF LSM, or the open system calls' exits); `hooks.bpf.c` runs the
//! generic hooks of policies on kprobes, kretprobes and system call entries, and
//! `sock_hooks.bpf.c` what stands for the socket functions; `probe.bpf.c` holds one trivial
//! program per program kind and helper, which `vigil probe` loads to learn what the running
//! kernel allows, and `floor.bpf.c` programs that do nothing, the benchmark's floor.
//! `build.rs` compiles them with clang-19, links the agent's families into one object, and this
//! crate embeds the objects ([`VIGIL_OBJ`], [`PROBE_OBJ`], [`FLOOR_OBJ`]).
//!
//! [`abi`] mirrors `src/bpf/include/vigil_events.h` as `#[repr(C)]` types and decodes ring
//! buffer records into them ([`abi::Record`]); its tests compare every size and offset with the
//! layout clang measured from the same header, so the two sides cannot drift. What the
//! kernel side can hold, and the socket stand-ins, are defined once in `abi` (`limits.rs`).
#![deny(missing_docs)]

pub mod abi;

/// Byte buffer aligned for the ELF parser (aya reads section headers in place).
#[repr(C, align(8))]
pub struct Aligned<B: ?Sized>(pub B);

macro_rules! embed_object {
    ($name:literal) => {{
        static OBJ: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
            env!("OUT_DIR"),
            "/",
            $name,
            ".bpf.o"
        )));
        &OBJ.0
    }};
}

/// The agent's programs, linked into one object so they share the ring buffer and scratch
/// maps: process lifecycle (`vigil_exec`, `vigil_fork`, `vigil_exit`), the file-open evaluator
/// (`vigil_lsm_file_open`, `vigil_exit_open`), the generic hooks (`vigil_kprobe`,
/// `vigil_kretprobe`, `vigil_syscall_enter_*`) and the socket stand-ins (sock_hooks.bpf.c).
pub const VIGIL_OBJ: &[u8] = embed_object!("vigil");

/// One program per program kind and helper, for the kernel capability probe.
pub const PROBE_OBJ: &[u8] = embed_object!("probe");

/// Programs that do nothing (a tracepoint and a raw tracepoint one), which the benchmark
/// attaches where the agent's programs attach to measure the kernel's own cost of a hook.
pub const FLOOR_OBJ: &[u8] = embed_object!("floor");
