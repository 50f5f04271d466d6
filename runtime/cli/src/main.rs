//! `datamesh`: the DataMesh node and its client (see `datamesh_cli::cli`).

#![forbid(unsafe_code)]

/// mimalloc instead of the system allocator: the node allocates and frees small
/// buffers on many threads (request decoding, log groups, documents), where glibc's
/// malloc spent 5 to 9% of the node's time in the W1, W2 and W5 profiles.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    datamesh_cli::cli::main()
}
