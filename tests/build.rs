//! Builds the 32-bit static walk-around program (`walkaround32/read32.c`) with clang-19, which
//! `make deps` installs for the eBPF programs; `vigil-walkaround` carries it.

use std::{path::PathBuf, process::Command};

fn main() {
    let src = "walkaround32/read32.c";
    println!("cargo:rerun-if-changed={src}");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("read32");
    let status = Command::new("clang-19")
        .args([
            "--target=i386-linux-gnu",
            "-m32",
            "-O2",
            "-static",
            "-nostdlib",
            "-ffreestanding",
            "-fno-pic",
            "-fno-stack-protector",
            "-fuse-ld=ld",
            "-o",
        ])
        .arg(&out)
        .arg(src)
        .status()
        .unwrap_or_else(|e| panic!("clang-19: {e}: run `make deps`"));
    assert!(status.success(), "clang-19 could not build {src}");
}
