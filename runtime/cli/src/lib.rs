//! The `datamesh` command line, apart from the node library it drives: [`cli`] (the
//! commands and their arguments; `serve` runs a node through `datamesh_runtime::node`),
//! [`client`] (the client commands, over gRPC or the wire protocol, and how their
//! answers are printed, diagnostics with miette's fancy renderer included) and
//! [`bench`] (`datamesh bench`, the benchmark workloads run against a node).
//!
//! Dependency direction: this crate depends on `datamesh_runtime`; the node never
//! depends on it, so a node embeds no CLI, no terminal rendering and no benchmark code.

#![forbid(unsafe_code)]

pub mod bench;
pub mod cli;
pub mod client;

pub use cli::main;
