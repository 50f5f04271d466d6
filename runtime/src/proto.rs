//! Generated protobuf and gRPC code of `datamesh.v1` (`runtime/proto/`): the messages
//! both transports carry and the tonic client and server. `api::pb` is this module.
#![allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used
)]
tonic::include_proto!("datamesh.v1");

/// prost, for clients that decode status details.
pub use prost as prost_reexport;

/// The encoded descriptor set, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("datamesh_descriptor");
