//! Generates the gRPC code for `proto/datamesh/v1/datamesh.proto` with a vendored
//! `protoc`, so building needs nothing installed beyond the Rust toolchain.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment
    // while we set it.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed=proto/datamesh/v1/datamesh.proto");
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("datamesh_descriptor.bin"))
        .compile_protos(&["proto/datamesh/v1/datamesh.proto"], &["proto"])?;
    Ok(())
}
