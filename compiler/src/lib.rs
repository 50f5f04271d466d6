//! The DataMesh projection language: from `.dmp` source to a typed IR that the reference
//! interpreter (and later the Cranelift code generator) runs.
//!
//! Pipeline: [`lexer`] → [`parser`] (grammar in `grammar/dmp.lalrpop`) → [`ast`] →
//! [`check`] (name resolution and types) → [`ir`] → [`interp`]. [`diag`] turns the
//! problems of every phase into miette diagnostics with stable codes.

pub mod ast;
pub mod check;
pub mod codec;
pub mod codegen;
pub mod depth;
pub mod diag;
pub mod engine;
pub mod interp;
pub mod ir;
pub mod lexer;
pub mod parser;
pub mod storage;
pub mod table;
