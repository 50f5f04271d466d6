//! `datamesh`: the DataMesh node and its client (see `datamesh_runtime::cli`).

fn main() -> std::process::ExitCode {
    datamesh_runtime::cli::main()
}
