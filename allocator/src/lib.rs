//! The agent's heap: mimalloc, called through its plain entry points.
//!
//! A crate of its own so that the benches measuring the agent's code in their own process
//! (`vigil-bench-sigma`) run it on the heap it runs on in the agent:
//! on glibc's malloc the Sigma engine spent 2.4 % more instructions per event.
//!
//! The agent's loop allocates and frees every event's strings and JSON, and glibc's allocator
//! was a third of the loop's time, most of it consolidating and unlinking its free lists.
//! mimalloc (v3) serves the same work from per-thread free pages for a third of those samples
//! (BENCHMARKS.md, "The pipeline on one core"). `no_thp`: mimalloc would otherwise ask for
//! transparent huge pages, whose zeroing on first touch took the gain back.
//!
//! [`Mimalloc`] asks for an alignment only when the plain allocation would not give it. The
//! `mimalloc` crate's allocator calls `mi_malloc_aligned` for every allocation, and that path
//! misses mimalloc's free lists: when its quick check finds the size's page empty it allocates
//! `size + align - 1` bytes instead, a request that can land in the next size class, so the
//! first size's page is never refilled and the next allocation of that size misses again. The
//! exec storm's loop spent a tenth of its instructions there (BENCHMARKS.md, "2026-12-07
//! (stop 56)").
//!
//! It serves Rust's heap only: the C the agent links (SQLite, zstd, ring) still allocates with
//! glibc's malloc and keeps glibc's checks. What the Rust heap gives up is glibc's hardening
//! against a corrupted heap (safe-linking, double-free checks), which matters only if `unsafe`
//! code (aya's, tokio's, the agent's own calls into the kernel) corrupts it. mimalloc's
//! `secure` mode (guard pages, encoded free lists) would give that back, and cost the loop a
//! fifth more instructions and time (299 M against 241 M for the same storm): not on.
//!
//! Memory freed goes back to the kernel 10 ms after (`purge_delay`, mimalloc v2's default)
//! until the agent has started, and a second after from then on (v3's default). With a second
//! throughout, what the start frees (the kernel's BTF, the programs' objects) was still
//! resident when the next allocations came: the agent's peak was 79 MiB against 66 MiB with
//! glibc's allocator (`hardening.rs`, `the_agent_refuses_hostile_policy_files_in_little_memory...`);
//! with 10 ms it is 61 MiB. With 10 ms throughout, the loop gave its memory back between two
//! turns of a storm and faulted it in again: the store bench's backlog rows, alternating with
//! the loop at a second, ran at 2.4 against 1.9 µs per policy event (5.4 against 5.2 per exec
//! event).

#![deny(missing_docs)]

use std::{
    alloc::{GlobalAlloc, Layout},
    ffi::c_void,
};

use libmimalloc_sys as mi;

/// The alignment every block of mimalloc's has: its size classes are whole words (two words
/// past the first class on 64-bit targets), and its pages start aligned. (Not so in mimalloc's
/// debug build with precise guard pages, `MIMALLOC_GUARDED_PRECISE`, which the agent's
/// features, `extended` and `no_thp`, do not build.)
const PLAIN_ALIGN: usize = std::mem::size_of::<usize>();

/// mimalloc as Rust's global allocator (see the module's doc).
pub struct Mimalloc;

// SAFETY: every block comes from mimalloc and goes back to it through `mi_free` (which takes
// aligned blocks too) or a reallocation of the same kind; a block from `mi_malloc` is aligned
// to `PLAIN_ALIGN`, and every other alignment is asked for.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        block(layout, mi::mi_malloc, mi::mi_malloc_aligned)
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        block(layout, mi::mi_zalloc, mi::mi_zalloc_aligned)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (the trait's contract).
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout` (the trait's contract).
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                mi::mi_realloc(ptr.cast(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
            }
        }
    }
}

/// A block for `layout` from `plain` when its alignment is one every block has, else from
/// `aligned`.
#[inline(always)]
fn block(
    layout: Layout,
    plain: unsafe extern "C" fn(usize) -> *mut c_void,
    aligned: unsafe extern "C" fn(usize, usize) -> *mut c_void,
) -> *mut u8 {
    // SAFETY: mimalloc's allocation functions take any size and a power-of-two alignment.
    unsafe {
        if layout.align() <= PLAIN_ALIGN {
            plain(layout.size()).cast()
        } else {
            aligned(layout.size(), layout.align()).cast()
        }
    }
}

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_e`, which the bindings do not name
/// (mimalloc keeps its retired options' slots so that the numbers do not move).
const MI_OPTION_PURGE_DELAY: mi::mi_option_t = 15;

/// How long memory freed stays with the allocator before it goes back to the kernel (see the
/// module's doc).
pub fn purge_freed_after(ms: std::ffi::c_long) {
    // SAFETY: sets one of the allocator's integer options; no memory is touched.
    unsafe { mi::mi_option_set(MI_OPTION_PURGE_DELAY, ms) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size and alignment a Rust program asks for comes back aligned, writable and
    /// zeroed where asked, and keeps its bytes through reallocation.
    #[test]
    fn blocks_are_aligned_and_keep_their_bytes() {
        let a = Mimalloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [
                1,
                3,
                7,
                8,
                9,
                15,
                16,
                24,
                40,
                100,
                728,
                1025,
                5000,
                70_000,
                1 << 21,
            ] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a nonzero size; every block is freed with its layout.
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    p.write_bytes(0xa5, size);
                    let grown = a.realloc(p, layout, size * 3);
                    assert_eq!(grown as usize % align, 0, "grown {size} align {align}");
                    assert!((0..size).all(|i| *grown.add(i) == 0xa5));
                    a.dealloc(grown, Layout::from_size_align(size * 3, align).unwrap());
                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0);
                    assert!((0..size).all(|i| *z.add(i) == 0));
                    a.dealloc(z, layout);
                }
            }
        }
    }
}
