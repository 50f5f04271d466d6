//! The DataMesh projection language: from `.dmp` source to a typed IR that the reference
//! interpreter and the Cranelift code generator run.
//!
//! Pipeline: [`lexer`] → [`parser`] (grammar in `grammar/dmp.lalrpop`) → [`ast`] →
//! [`check`] (name resolution and types) → [`ir`] → [`interp`] | [`codegen`]. [`diag`]
//! turns the problems of every phase into miette diagnostics with stable codes.
//!
//! Unsafe code is denied everywhere but in [`codegen`], which calls native code it
//! generated and whose every `unsafe` block says why it is sound.

#![deny(unsafe_code)]

pub mod ast;
pub mod check;
pub mod codegen;
pub mod codes;
pub mod depth;
pub mod diag;
pub mod exec;
pub mod interp;
pub mod ir;
pub mod lexer;
pub mod parser;
