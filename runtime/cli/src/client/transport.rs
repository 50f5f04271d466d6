//! [`Client`]: a connection to a node over gRPC, or over the wire protocol
//! ([`datamesh_runtime::wire`]) with gRPC beside it for the streaming calls.
//!
//! The unary calls have the same signatures as the generated gRPC client's, so the CLI
//! and `bench` are written once for both transports; the streaming calls (and anything
//! else) reach the gRPC client through `Deref`.

use tonic::codegen::InterceptedService;
use tonic::transport::Channel;
use tonic::{IntoRequest, Response, Status};

use datamesh_runtime::api::pb;
use datamesh_runtime::api::pb::data_mesh_client::DataMeshClient;
use datamesh_runtime::connect::Bearer;
use datamesh_runtime::wire::{Method, WireClient};

/// The generated gRPC client, sending this process's token.
pub type GrpcClient = DataMeshClient<InterceptedService<Channel, Bearer>>;

/// A connection to a node (see the module documentation).
#[derive(Debug, Clone)]
pub struct Client {
    grpc: GrpcClient,
    wire: Option<WireClient>,
}

impl Client {
    /// A client of `grpc`, whose unary calls go over `wire` when given.
    pub fn new(grpc: GrpcClient, wire: Option<WireClient>) -> Client {
        Client { grpc, wire }
    }

    /// Whether the unary calls go over the wire protocol.
    pub fn is_wire(&self) -> bool {
        self.wire.is_some()
    }
}

impl std::ops::Deref for Client {
    type Target = GrpcClient;

    fn deref(&self) -> &GrpcClient {
        &self.grpc
    }
}

impl std::ops::DerefMut for Client {
    fn deref_mut(&mut self) -> &mut GrpcClient {
        &mut self.grpc
    }
}

/// The unary calls, over the wire protocol when the client has it.
macro_rules! unary {
    ($($(#[$doc:meta])* $call:ident($request:ty) -> $response:ty = $method:ident;)*) => {
        impl Client {
            $(
                $(#[$doc])*
                ///
                /// # Errors
                /// The node's status.
                pub async fn $call(
                    &mut self,
                    request: impl IntoRequest<$request>,
                ) -> Result<Response<$response>, Status> {
                    match &self.wire {
                        Some(wire) => wire
                            .call(Method::$method, &request.into_request().into_inner())
                            .await
                            .map(Response::new),
                        None => self.grpc.$call(request).await,
                    }
                }
            )*
        }
    };
}

unary! {
    /// `Append`.
    append(pb::AppendRequest) -> pb::AppendResponse = Append;
    /// `Read`.
    read(pb::ReadRequest) -> pb::ReadResponse = Read;
    /// `Get`.
    get(pb::GetRequest) -> pb::GetResponse = Get;
    /// `Scan`.
    scan(pb::ScanRequest) -> pb::ScanResponse = Scan;
    /// `Deploy`.
    deploy(pb::DeployRequest) -> pb::DeployResponse = Deploy;
    /// `ListProjections`.
    list_projections(pb::ListProjectionsRequest) -> pb::ListProjectionsResponse = ListProjections;
    /// `Status`.
    status(pb::StatusRequest) -> pb::StatusResponse = Status;
    /// `Promote`.
    promote(pb::PromoteRequest) -> pb::PromoteResponse = Promote;
    /// `Retire`.
    retire(pb::RetireRequest) -> pb::RetireResponse = Retire;
    /// `LinkReset`.
    link_reset(pb::LinkResetRequest) -> pb::LinkResetResponse = LinkReset;
    /// `TokenCreate`.
    token_create(pb::TokenCreateRequest) -> pb::TokenCreateResponse = TokenCreate;
    /// `TokenList`.
    token_list(pb::TokenListRequest) -> pb::TokenListResponse = TokenList;
    /// `TokenRevoke`.
    token_revoke(pb::TokenRevokeRequest) -> pb::TokenRevokeResponse = TokenRevoke;
    /// `Audit`.
    audit(pb::AuditRequest) -> pb::AuditResponse = Audit;
}
