//! The `datamesh` command line, built inside this crate so the end-to-end tests can start
//! it as a real process (`CARGO_BIN_EXE_datamesh-under-test`): the same code as the
//! `datamesh` binary, which is a one-line wrapper around the same function, with the
//! same global allocator.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    datamesh_cli::main()
}
