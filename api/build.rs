//! Generates the vigil.v1 types, server and client from `proto/`, with the file descriptor set
//! the reflection service serves. protoc comes with the build (protoc-bin-vendored): the
//! build needs nothing installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: a build script is single-threaded; prost-build reads PROTOC after this.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("vigil_v1_descriptor.bin"))
        .compile_protos(&["proto/vigil/v1/vigil.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
