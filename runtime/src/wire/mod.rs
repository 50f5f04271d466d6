//! The wire protocol: the API's unary calls as length-prefixed protobuf frames,
//! pipelined on one connection, beside gRPC on the same listeners.
//!
//! gRPC stays the public API and keeps every feature (streams, reflection, health,
//! TLS). The wire protocol carries the same request and response messages for clients
//! that want the last microseconds of a call: per request it spares HTTP/2's frames,
//! header compression, flow control and the task hand-offs of its server, which were
//! most of the node's user-space CPU per point read (measured in `book/src/node/performance.md`).
//!
//! A connection starts with the 4 bytes [`MAGIC`] (`DMW1`), on the node's plaintext TCP
//! port or its Unix socket: the node reads the first 4 bytes of every connection there
//! and serves gRPC when they are anything else. (It is not served on a TLS port:
//! a client that needs TLS uses gRPC.) Then frames, every integer big-endian:
//!
//! ```text
//! request:  body length u32 | call id u32 | method u8 | body (the request message)
//! response: body length u32 | call id u32 | code u8   | body
//! ```
//!
//! A response's code is the gRPC status code: 0 (OK) with the response message as its
//! body, or an error with the body `message length u32 | message (UTF-8) | details`,
//! the details being what gRPC sends as `grpc-status-details-bin` (an encoded
//! `google.rpc.Status`, or empty). Call ids are the client's choice; a response carries
//! the id of its request. The node runs the calls of one connection concurrently (up
//! to [`MAX_IN_FLIGHT`]; past that it stops reading until one finishes) and answers
//! each as it finishes, so responses may come in another order than their requests.
//!
//! The first frame is [`Method::Hello`], whose body is the client's token (UTF-8, empty
//! for none); its response has an empty body. Every call is then authenticated with
//! that token and authorized as its gRPC method is, and validated, limited, audited and
//! counted in the metrics the same way: the node runs the same service code for both
//! transports. A frame longer than the node's message limit is answered with
//! RESOURCE_EXHAUSTED and the connection is closed (what follows it cannot be trusted
//! to be a frame); an unknown method is UNIMPLEMENTED, the connection stays. The
//! streaming calls (`Subscribe`, `Export`) are gRPC only.
//!
//! Invariant: a call on the wire protocol reaches the same `DataMesh` trait method
//! with the same checks as over gRPC; nothing is served here that gRPC refuses.

mod client;
mod server;

pub use client::WireClient;
pub use server::{Rewind, Sniffed, WireService, incoming, sniff};

/// What a wire protocol connection starts with.
pub const MAGIC: &[u8; 4] = b"DMW1";

/// Bytes before a frame's body.
pub const HEADER: usize = 9;

/// Calls one connection runs at once; past that the node stops reading it.
pub const MAX_IN_FLIGHT: usize = 256;

/// The calls of the wire protocol, by their number on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Method {
    /// The first frame: the token, if any.
    Hello = 0,
    /// `Append`.
    Append = 1,
    /// `Read`.
    Read = 2,
    /// `Get`.
    Get = 3,
    /// `Scan`.
    Scan = 4,
    /// `Deploy`.
    Deploy = 5,
    /// `ListProjections`.
    ListProjections = 6,
    /// `Status`.
    Status = 7,
    /// `Promote`.
    Promote = 8,
    /// `Retire`.
    Retire = 9,
    /// `LinkReset`.
    LinkReset = 10,
    /// `TokenCreate`.
    TokenCreate = 11,
    /// `TokenList`.
    TokenList = 12,
    /// `TokenRevoke`.
    TokenRevoke = 13,
    /// `Audit`.
    Audit = 14,
}

impl Method {
    /// Every method, in wire order.
    pub const ALL: [Method; 15] = [
        Method::Hello,
        Method::Append,
        Method::Read,
        Method::Get,
        Method::Scan,
        Method::Deploy,
        Method::ListProjections,
        Method::Status,
        Method::Promote,
        Method::Retire,
        Method::LinkReset,
        Method::TokenCreate,
        Method::TokenList,
        Method::TokenRevoke,
        Method::Audit,
    ];

    /// The method numbered `n` on the wire.
    pub fn from_wire(n: u8) -> Option<Method> {
        Method::ALL.get(usize::from(n)).copied()
    }

    /// The gRPC method it is (what authorization, audit and metrics name).
    pub fn grpc_name(self) -> &'static str {
        match self {
            Method::Hello => "Hello",
            Method::Append => "Append",
            Method::Read => "Read",
            Method::Get => "Get",
            Method::Scan => "Scan",
            Method::Deploy => "Deploy",
            Method::ListProjections => "ListProjections",
            Method::Status => "Status",
            Method::Promote => "Promote",
            Method::Retire => "Retire",
            Method::LinkReset => "LinkReset",
            Method::TokenCreate => "TokenCreate",
            Method::TokenList => "TokenList",
            Method::TokenRevoke => "TokenRevoke",
            Method::Audit => "Audit",
        }
    }
}

/// Appends a frame's header: body length, call id and the method or code byte.
fn put_header(out: &mut Vec<u8>, len: usize, id: u32, kind: u8) {
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.push(kind);
}

/// Appends a frame carrying `message` (a request, or an OK response with code 0).
fn put_message(out: &mut Vec<u8>, id: u32, kind: u8, message: &impl prost::Message) {
    put_header(out, message.encoded_len(), id, kind);
    message.encode_raw(out);
}

/// Appends an error response for `status`.
fn put_status(out: &mut Vec<u8>, id: u32, status: &tonic::Status) {
    let message = status.message().as_bytes();
    let details = status.details();
    put_header(
        out,
        4 + message.len() + details.len(),
        id,
        status.code() as u8,
    );
    let message_len = u32::try_from(message.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&message_len.to_be_bytes());
    out.extend_from_slice(message);
    out.extend_from_slice(details);
}

/// A frame's header: body length, call id and the method or code byte.
fn read_header(bytes: &[u8]) -> Option<(usize, u32, u8)> {
    let len = u32::from_be_bytes(bytes.get(0..4)?.try_into().ok()?);
    let id = u32::from_be_bytes(bytes.get(4..8)?.try_into().ok()?);
    Some((usize::try_from(len).ok()?, id, *bytes.get(8)?))
}

/// What a connection's buffered input holds next.
enum Next {
    /// A whole frame: its call id, method or code byte, and body.
    Frame(u32, u8, bytes::Bytes),
    /// Not a whole frame yet (room for more of it is reserved).
    Partial,
    /// A frame whose header claims `len` bytes, over the limit: the stream cannot be
    /// trusted past it.
    TooLong { id: u32, len: usize },
}

/// Takes the next whole frame out of `input`, refusing bodies over `max` bytes. For a
/// partial frame it reserves room for the rest, but never more than twice what has
/// arrived: a header alone does not make a peer allocate the length it claims.
fn take_frame(input: &mut bytes::BytesMut, max: usize) -> Next {
    use bytes::Buf;
    let Some((len, id, kind)) = read_header(input) else {
        return Next::Partial;
    };
    if len > max {
        return Next::TooLong { id, len };
    }
    if input.len() < HEADER + len {
        let missing = HEADER + len - input.len();
        input.reserve(missing.min(input.len().max(64 << 10)));
        return Next::Partial;
    }
    input.advance(HEADER);
    Next::Frame(id, kind, input.split_to(len).freeze())
}

/// The status an error response's `code` and `body` carry.
fn status_from(code: u8, body: &[u8]) -> tonic::Status {
    let parsed = body
        .get(0..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .and_then(|n| usize::try_from(n).ok())
        .and_then(|n| Some((body.get(4..4 + n)?, body.get(4 + n..)?)));
    let code = tonic::Code::from_i32(i32::from(code));
    match parsed {
        Some((message, details)) => tonic::Status::with_details(
            code,
            String::from_utf8_lossy(message),
            bytes::Bytes::copy_from_slice(details),
        ),
        None => tonic::Status::internal("the node sent an error response that does not decode"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_round_trip_and_name_grpc_methods() {
        for (n, method) in Method::ALL.iter().enumerate() {
            assert_eq!(Method::from_wire(n as u8), Some(*method));
            assert_eq!(*method as u8 as usize, n);
        }
        assert_eq!(Method::from_wire(Method::ALL.len() as u8), None);
        // Every method but Hello is a unary method of the service, by name.
        let proto = include_str!("../../proto/datamesh/v1/datamesh.proto");
        for method in &Method::ALL[1..] {
            let rpc = format!("rpc {}(", method.grpc_name());
            assert!(proto.contains(&rpc), "{rpc} is not in the proto");
        }
    }

    #[test]
    fn an_error_response_carries_code_message_and_details() {
        let status = tonic::Status::with_details(
            tonic::Code::FailedPrecondition,
            "version conflict: é",
            bytes::Bytes::from_static(b"\x01\x02"),
        );
        let mut out = Vec::new();
        put_status(&mut out, 7, &status);
        let (len, id, code) = read_header(&out).expect("header");
        assert_eq!((len, id), (out.len() - HEADER, 7));
        let back = status_from(code, &out[HEADER..]);
        assert_eq!(back.code(), tonic::Code::FailedPrecondition);
        assert_eq!(back.message(), "version conflict: é");
        assert_eq!(back.details(), b"\x01\x02");
        // A body that lies about its message length is an error, not a panic.
        assert_eq!(
            status_from(5, &[0, 0, 0, 9, b'x']).code(),
            tonic::Code::Internal
        );
    }
}
