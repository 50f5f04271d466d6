//! The DataMesh node: the durable log ([`log`]), the projection store on fjall
//! ([`store`]), the projection engine ([`engine`]), the gRPC API ([`api`]), the node's
//! place in the mesh ([`mesh`]), the lean second transport ([`wire`]), and what runs
//! them together ([`node`]).
//!
//! The surface: a node is run with [`serve`] and a [`NodeConfig`]; its parts are
//! [`Log`], [`Store`] and [`Engine`]; clients connect with [`connect::channel`] (gRPC,
//! messages in [`api::pb`]) or [`WireClient`]. Metrics and rate limiting are internal.
//!
//! Dependency direction: the runtime uses the compiler's typed IR and engines through
//! `datamesh_compiler`; it knows nothing of syntax. The `datamesh` command line is a
//! separate crate (`runtime/cli`) that depends on this one, never the reverse.

#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod config;
pub mod connect;
pub mod engine;
pub mod links;
pub mod log;
pub mod mesh;
mod metrics;
pub mod node;
pub mod proto;
mod rate;
pub mod store;
pub mod tls;
pub mod wire;

pub use engine::{Engine, EngineKind};
pub use log::{Log, LogConfig, LogError, NewEvent};
pub use node::{NodeConfig, serve};
pub use store::Store;
pub use wire::WireClient;
