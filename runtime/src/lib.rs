//! The DataMesh node: the durable log ([`log`]), the projection store on fjall
//! ([`store`]), the projection engine ([`engine`]), the gRPC API ([`api`]), the node's
//! place in the mesh ([`mesh`]), the lean second transport ([`wire`]) and the client side of the `datamesh` CLI
//! ([`client`]).
//!
//! Dependency direction: the runtime uses the compiler's typed IR and interpreter
//! through `datamesh_compiler`; it knows nothing of syntax.

#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod audit;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod engine;
pub mod log;
pub mod mesh;
pub mod metrics;
pub mod node;
pub mod rate;
pub mod store;
pub mod tls;
pub mod wire;
