//! The fmod_ret program on `security_file_open`, the file-open rung between BPF LSM and the
//! system calls' tracepoints.
//!
//! aya 0.14 loads fentry and fexit programs but not fmod_ret ones (`BPF_MODIFY_RETURN`), so this
//! one is assembled here and loaded with bpf(2). It is kept to what needs no relocation but its
//! map's descriptor: the policy is judged by `vigil_fentry_file_open` (policy.bpf.c, loaded by
//! aya with the rest of the object), which runs first on the same trampoline and leaves a
//! denial's errno in `vigil_fmod_verdicts` by thread; this program returns that errno when it
//! is for the file being opened, so `security_file_open` is not called and the open fails, and
//! 0 otherwise. An errno an earlier fmod_ret program returned is kept.

use std::{
    ffi::CString,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    path::Path,
};

use aya::Btf;
use aya_obj::btf::BtfKind;
use vigil_bpf_kprobes::abi::{FMOD_VERDICT_ERRNO, FMOD_VERDICT_FILE};

/// The kernel function the program attaches to.
pub const FUNCTION: &str = "security_file_open";

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
const BPF_PROG_TYPE_TRACING: u32 = 26;
const BPF_MODIFY_RETURN: u32 = 26;
const BPF_PSEUDO_MAP_FD: u8 = 1;

const HELPER_MAP_LOOKUP_ELEM: i32 = 1;
const HELPER_MAP_DELETE_ELEM: i32 = 3;
const HELPER_GET_CURRENT_PID_TGID: i32 = 14;

/// One eBPF instruction, as `struct bpf_insn` lays it out.
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

const fn mov_reg(dst: u8, src: u8) -> Insn {
    insn(0xbf, dst, src, 0, 0)
}
const fn mov_imm(dst: u8, imm: i32) -> Insn {
    insn(0xb7, dst, 0, 0, imm)
}
const fn add_imm(dst: u8, imm: i32) -> Insn {
    insn(0x07, dst, 0, 0, imm)
}
const fn load_u64(dst: u8, src: u8, off: i16) -> Insn {
    insn(0x79, dst, src, off, 0)
}
const fn store_u64(dst: u8, off: i16, src: u8) -> Insn {
    insn(0x7b, dst, src, off, 0)
}
const fn jne_imm(dst: u8, imm: i32, off: i16) -> Insn {
    insn(0x55, dst, 0, off, imm)
}
const fn jeq_imm(dst: u8, imm: i32, off: i16) -> Insn {
    insn(0x15, dst, 0, off, imm)
}
const fn jeq_reg(dst: u8, src: u8, off: i16) -> Insn {
    insn(0x1d, dst, src, off, 0)
}
const fn jne_reg(dst: u8, src: u8, off: i16) -> Insn {
    insn(0x5d, dst, src, off, 0)
}
const fn call(helper: i32) -> Insn {
    insn(0x85, 0, 0, 0, helper)
}
const fn exit() -> Insn {
    insn(0x95, 0, 0, 0, 0)
}
/// `dst = map` (a 64-bit load of the map's descriptor: two instructions).
fn load_map(dst: u8, map: i32) -> [Insn; 2] {
    [
        insn(0x18, dst, BPF_PSEUDO_MAP_FD, 0, map),
        insn(0, 0, 0, 0, 0),
    ]
}

/// `dst = imm` for a 64-bit constant (two instructions).
fn load_imm64(dst: u8, imm: u64) -> [Insn; 2] {
    [
        insn(0x18, dst, 0, 0, imm as u32 as i32),
        insn(0, 0, 0, 0, (imm >> 32) as u32 as i32),
    ]
}

/// Which verdicts a program carries out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerdictFor {
    /// The file-open judge's, for the `struct file` being opened (`security_file_open`).
    File,
    /// A generic hook's Override, judged at one of these attach points (their `vigil_hooks`
    /// keys).
    Keys(Vec<u64>),
}

/// The program, for the map of verdicts `map`.
fn program(map: i32, verdicts: &VerdictFor) -> Vec<Insn> {
    match verdicts {
        VerdictFor::File => file_program(map),
        VerdictFor::Keys(keys) => keys_program(map, keys),
    }
}

/// The program for a generic hook's Override: the thread's verdict's errno when the verdict
/// names one of `keys` (and it is consumed), else 0, the verdict left for the program on this
/// function it names (two system calls can share an LSM check; the next call judged at the
/// verdict's own attach point clears one left unused). A second fmod_ret program on a function
/// runs only while the ones before it returned 0, so there is no earlier refusal to keep.
fn keys_program(map: i32, keys: &[u64]) -> Vec<Insn> {
    let mut p = vec![
        mov_imm(7, 0),
        call(HELPER_GET_CURRENT_PID_TGID),
        store_u64(10, -8, 0),
    ];
    p.extend(load_map(1, map));
    p.extend([mov_reg(2, 10), add_imm(2, -8), call(HELPER_MAP_LOOKUP_ELEM)]);
    // Each key: 2 instructions to load it, 1 to compare; then 1 jump past the errno's load and
    // the delete.
    let n = keys.len() as i16;
    p.push(jeq_imm(0, 0, 3 * n + 2 + 6)); // no verdict (-> the end's mov)
    p.push(load_u64(1, 0, FMOD_VERDICT_FILE));
    for (i, k) in keys.iter().enumerate() {
        p.extend(load_imm64(2, *k));
        // -> the errno's load
        p.push(jeq_reg(1, 2, 3 * (n - 1 - i as i16) + 1));
    }
    p.push(insn(0x05, 0, 0, 6, 0)); // another attach point's: left (-> the end's mov)
    p.push(load_u64(7, 0, FMOD_VERDICT_ERRNO));
    p.extend(load_map(1, map));
    p.extend([
        mov_reg(2, 10),
        add_imm(2, -8),
        call(HELPER_MAP_DELETE_ELEM),
        mov_reg(0, 7),
        exit(),
    ]);
    p
}

/// The file-open program. Its context is `security_file_open`'s arguments as u64s,
/// `struct file *file` at 0, then the return value so far at 8. Any entry of this thread is
/// consumed, whether it is used or not (an earlier fmod_ret refused already, or it was left by
/// an open this program did not see): a stale verdict must never meet a reused `struct file`
/// address.
fn file_program(map: i32) -> Vec<Insn> {
    let mut p = vec![
        mov_reg(6, 1),     // 0: r6 = ctx
        load_u64(7, 6, 8), // 1: r7 = what an earlier fmod_ret returned
        call(HELPER_GET_CURRENT_PID_TGID),
        store_u64(10, -8, 0), // 3: the key, this thread
    ];
    p.extend(load_map(1, map)); // 4, 5
    p.extend([
        mov_reg(2, 10),
        add_imm(2, -8),
        call(HELPER_MAP_LOOKUP_ELEM), // 8
        jeq_imm(0, 0, 10),            // 9: no verdict (-> 20)
        load_u64(1, 0, FMOD_VERDICT_FILE),
        load_u64(2, 6, 0),
        jne_reg(1, 2, 2), // 12: another open's: consumed, unused (-> 15)
        jne_imm(7, 0, 1), // 13: an earlier refusal stands (-> 15)
        load_u64(7, 0, FMOD_VERDICT_ERRNO),
    ]);
    p.extend(load_map(1, map)); // 15, 16
    p.extend([
        mov_reg(2, 10),
        add_imm(2, -8),
        call(HELPER_MAP_DELETE_ELEM), // 19
        mov_reg(0, 7),                // 20
        exit(),
    ]);
    p
}

/// `union bpf_attr` for BPF_PROG_LOAD, up to the fields this loader sets.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
    attach_btf_obj_fd: u32,
    _pad: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<OwnedFd> {
    // SAFETY: `attr` is a #[repr(C)] bpf_attr prefix we own; the kernel reads size_of::<T>()
    // bytes of it and zero-extends the rest.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as u32,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor the kernel gave us, owned once here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Loads `insns` as an fmod_ret program on `function`; the error carries the verifier's log.
fn load(btf: &Btf, function: &str, insns: &[Insn]) -> Result<OwnedFd, String> {
    let target = btf
        .id_by_type_name_kind(function, BtfKind::Func)
        .map_err(|e| format!("{function} is not in the kernel's BTF: {e}"))?;
    let license = CString::new("GPL").expect("no NUL");
    let mut log = vec![0u8; 64 * 1024];
    let mut name = [0u8; 16];
    name[..13].copy_from_slice(b"vigil_fmodret");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_TRACING,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name: name,
        expected_attach_type: BPF_MODIFY_RETURN,
        attach_btf_id: target,
        ..Default::default()
    };
    bpf(BPF_PROG_LOAD, &mut attr).map_err(|e| {
        let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
        let text = String::from_utf8_lossy(&log[..end]);
        let tail: Vec<&str> = text.lines().rev().take(4).collect();
        format!(
            "the kernel refused the fmod_ret program on {function}: {e}{}",
            if tail.is_empty() {
                String::new()
            } else {
                format!(
                    " (verifier: {})",
                    tail.into_iter().rev().collect::<Vec<_>>().join("; ")
                )
            }
        )
    })
}

/// Attaches a loaded tracing program where it was verified for (`function`); returns the link.
fn attach(prog: &OwnedFd, function: &str) -> Result<OwnedFd, String> {
    #[repr(C)]
    struct RawTracepointOpen {
        name: u64,
        prog_fd: u32,
        _pad: u32,
    }
    let mut attr = RawTracepointOpen {
        name: 0,
        prog_fd: prog.as_raw_fd() as u32,
        _pad: 0,
    };
    bpf(BPF_RAW_TRACEPOINT_OPEN, &mut attr)
        .map_err(|e| format!("the kernel refused to attach fmod_ret to {function}: {e}"))
}

/// Loads and attaches the program on `function` over the verdicts map `map`, carrying out
/// `verdicts`; returns its link (the program is held by it).
pub fn attach_over(
    btf: &Btf,
    function: &str,
    map: BorrowedFd<'_>,
    verdicts: &VerdictFor,
) -> Result<OwnedFd, String> {
    let prog = load(btf, function, &program(map.as_raw_fd(), verdicts))?;
    attach(&prog, function)
}

/// Whether fmod_ret programs load and attach to [`FUNCTION`] here: a program that returns 0,
/// attached for a moment.
pub fn probe(btf: &Btf) -> Result<(), String> {
    let prog = load(btf, FUNCTION, &[mov_imm(0, 0), exit()])?;
    attach(&prog, FUNCTION).map(drop)
}

/// Pins a link the kernel gave us at `path` in bpffs.
pub fn pin(link: &OwnedFd, path: &Path) -> std::io::Result<()> {
    #[repr(C)]
    struct ObjPin {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut attr = ObjPin {
        pathname: c.as_ptr() as u64,
        bpf_fd: link.as_raw_fd() as u32,
        file_flags: 0,
    };
    // BPF_OBJ_PIN returns 0, not a descriptor.
    // SAFETY: as in `bpf`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_PIN,
            &mut attr as *mut ObjPin,
            std::mem::size_of::<ObjPin>() as u32,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jumps_land_where_their_comments_say() {
        let p = program(7, &VerdictFor::File);
        assert_eq!(p.len(), 22);
        let target = |at: usize| (at as i16 + 1 + p[at].off) as usize;
        assert_eq!(target(9), 20, "no verdict returns what came before");
        assert_eq!(target(12), 15, "another file's verdict is deleted, unused");
        assert_eq!(
            target(13),
            15,
            "an earlier refusal stands; the verdict is deleted"
        );
        assert_eq!(p[19].imm, HELPER_MAP_DELETE_ELEM);
        assert_eq!(p[20].code, 0xbf);
        assert_eq!(p[21].code, 0x95);
        // Both map loads carry the descriptor, as the kernel's pseudo map fd.
        for at in [4, 15] {
            assert_eq!((p[at].code, p[at].regs >> 4, p[at].imm), (0x18, 1, 7));
        }
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 120);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, attach_btf_id), 108);
    }

    #[test]
    fn a_verdict_is_taken_only_for_its_keys() {
        for keys in [
            vec![0xffff_ffff_8100_0000u64],
            vec![0xffff_ffff_8100_0000, 0xffff_ffff_8100_0004],
        ] {
            let p = program(7, &VerdictFor::Keys(keys.clone()));
            let target = |at: usize| (at as i16 + 1 + p[at].off) as usize;
            let errno = p
                .iter()
                .position(|i| i.code == 0x79 && i.regs & 0xf == 7)
                .expect("the errno's load");
            let end = p.len() - 2;
            assert_eq!(p[end].code, 0xbf, "r0 = r7");
            let no_verdict = p.iter().position(|i| i.code == 0x15).unwrap();
            assert_eq!(target(no_verdict), end, "no verdict returns 0");
            // Each key is loaded whole, and a match jumps to the errno's load.
            let compares: Vec<usize> = (0..p.len()).filter(|&at| p[at].code == 0x1d).collect();
            assert_eq!(compares.len(), keys.len());
            for (c, k) in compares.iter().zip(&keys) {
                assert_eq!(target(*c), errno);
                let lo = p[c - 2].imm as u32 as u64;
                let hi = p[c - 1].imm as u32 as u64;
                assert_eq!(p[c - 2].code, 0x18);
                assert_eq!(hi << 32 | lo, *k);
            }
            // No match skips the errno and the delete, leaving the verdict.
            assert_eq!(target(errno - 1), end);
            assert_eq!(p[errno + 1].code, 0x18, "the map, for the delete");
            assert_eq!(p[end - 1].imm, HELPER_MAP_DELETE_ELEM);
        }
    }
}
