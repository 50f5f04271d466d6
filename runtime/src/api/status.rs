//! Status mapping: how each failure of a call becomes a gRPC status (code and message,
//! messages from other subsystems clipped), and deploy diagnostics carried as status
//! details.

use datamesh_compiler::diag::Diagnostic;
use datamesh_compiler::exec::codec::{clip_to, excerpt};
use tonic::Status;

use super::pb;
use crate::engine::LifecycleError;
use crate::log::LogError;

/// The most bytes of a message made elsewhere (the log, the engine) a status carries.
pub(super) const MAX_FOREIGN_MESSAGE: usize = 768;

/// A message from another subsystem, cut to [`MAX_FOREIGN_MESSAGE`] (it may quote
/// names a client chose).
pub(super) fn foreign(message: String) -> String {
    clip_to(message, MAX_FOREIGN_MESSAGE)
}

/// Names for a message: each an excerpt, at most 20, then how many more.
pub(super) fn list_names<'a>(names: impl ExactSizeIterator<Item = &'a str>) -> String {
    let total = names.len();
    let mut shown: Vec<String> = names.take(20).map(|n| excerpt(n).into_owned()).collect();
    if total > shown.len() {
        shown.push(format!("and {} more", total - shown.len()));
    }
    shown.join(", ")
}

pub(super) fn token_status(error: crate::auth::AuthError) -> Status {
    match error {
        crate::auth::AuthError::Invalid(m) => Status::invalid_argument(foreign(m)),
        crate::auth::AuthError::NoToken(_) => Status::not_found(foreign(error.to_string())),
        crate::auth::AuthError::File { .. } => Status::internal(foreign(error.to_string())),
    }
}

/// What a stream that follows the log ends with when the node shuts down.
pub(super) fn shutting_down() -> Status {
    Status::unavailable("the node is shutting down")
}

pub(super) fn lifecycle_status(error: LifecycleError) -> Status {
    match error {
        LifecycleError::NotFound(m) => Status::not_found(foreign(m)),
        LifecycleError::NotReady(m) => Status::failed_precondition(foreign(m)),
        LifecycleError::Store(e) => Status::internal(foreign(e.to_string())),
    }
}

pub(super) fn log_status(error: LogError) -> Status {
    match error {
        LogError::VersionConflict { .. } => Status::failed_precondition(foreign(error.to_string())),
        LogError::PartialDuplicate { .. } | LogError::IdConflict { .. } => {
            Status::already_exists(foreign(error.to_string()))
        }
        LogError::DuplicateIdInRequest(_) => Status::invalid_argument(foreign(error.to_string())),
        LogError::Poisoned(_) | LogError::Closed | LogError::Locked(_) => {
            Status::unavailable(foreign(error.to_string()))
        }
        LogError::Io(_) => Status::internal(foreign(error.to_string())),
        LogError::Corrupt { .. } | LogError::Damaged { .. } | LogError::Header { .. } => {
            Status::data_loss(foreign(error.to_string()))
        }
    }
}

/// Line starts of a source, to place diagnostics without rescanning it for each.
pub(super) struct Lines<'a> {
    source: &'a str,
    /// Byte offset of each line's start.
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(source: &'a str) -> Lines<'a> {
        let mut starts = vec![0];
        starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        Lines { source, starts }
    }

    /// Line and column (1-based, the column in characters) of a byte offset.
    fn line_col(&self, offset: usize) -> (u32, u32) {
        let offset = offset.min(self.source.len());
        let line = self.starts.partition_point(|&start| start <= offset).max(1);
        let start = self.starts.get(line - 1).copied().unwrap_or(0);
        let column = self
            .source
            .get(start..offset)
            .map_or(0, |text| text.chars().count())
            + 1;
        (
            u32::try_from(line).unwrap_or(u32::MAX),
            u32::try_from(column).unwrap_or(u32::MAX),
        )
    }
}

/// What a diagnostic's text fields may hold, in bytes (message, label, help): a
/// diagnostic quoting a 5 MB name must not become a 5 MB message.
pub(super) const DIAGNOSTIC_TEXT: usize = 300;

/// The most diagnostics a deploy response lists (the rest are counted in `omitted`).
pub(super) const MAX_DIAGNOSTICS: usize = 100;

/// The budget of a failed deploy's status details (an encoded `DeployResponse`): they
/// travel base64-encoded in an HTTP/2 header, which clients limit to 8 to 16 KiB with
/// everything else.
pub(super) const DETAILS_BUDGET: usize = 2 << 10;

/// The type URL of a `DeployResponse` in a status's details.
pub const DEPLOY_RESPONSE_URL: &str = "type.googleapis.com/datamesh.v1.DeployResponse";

/// A status whose details (`grpc-status-details-bin`) are the standard
/// `google.rpc.Status`, carrying one typed detail (`type_url`, encoded `value`), as
/// stock clients expect (grpcurl prints it, Python's `grpc_status` decodes it).
pub(super) fn status_with_detail(
    code: tonic::Code,
    message: String,
    type_url: &str,
    value: Vec<u8>,
) -> Status {
    let rich = tonic_types::Status {
        code: code as i32,
        message: datamesh_compiler::exec::codec::clip_to(message.clone(), 512),
        details: vec![prost_types::Any {
            type_url: type_url.to_owned(),
            value,
        }],
    };
    Status::with_details(code, message, prost::Message::encode_to_vec(&rich).into())
}

/// The diagnostics of a refused deploy: the `DeployResponse` in the status's details.
pub fn deploy_diagnostics(status: &Status) -> Option<pb::DeployResponse> {
    let rich: tonic_types::Status = prost::Message::decode(status.details()).ok()?;
    rich.details
        .iter()
        .find(|any| any.type_url == DEPLOY_RESPONSE_URL)
        .and_then(|any| prost::Message::decode(any.value.as_slice()).ok())
}

pub(super) fn diagnostic_to_pb(lines: &Lines<'_>, d: &Diagnostic) -> pb::Diagnostic {
    let (line, column) = lines.line_col(d.span.start as usize);
    let clip = |text: &str| clip_to(text.to_owned(), DIAGNOSTIC_TEXT);
    pb::Diagnostic {
        code: clip(d.code.id),
        severity: if d.is_error() { "error" } else { "warning" }.to_owned(),
        message: clip(&d.message),
        line,
        column,
        start: d.span.start,
        end: d.span.end,
        label: clip(&d.label),
        help: d.help.as_deref().map(clip).unwrap_or_default(),
    }
}

/// A deploy response's diagnostics: errors first, at most [`MAX_DIAGNOSTICS`] and, when
/// `budget` is set, at most that many encoded bytes (but always the first), with the
/// number left out.
pub(super) fn diagnostics_to_pb(
    source: &str,
    diagnostics: &[Diagnostic],
    budget: Option<usize>,
) -> (Vec<pb::Diagnostic>, u32) {
    let lines = Lines::new(source);
    let ordered = diagnostics
        .iter()
        .filter(|d| d.is_error())
        .chain(diagnostics.iter().filter(|d| !d.is_error()));
    let mut listed = Vec::new();
    let mut bytes = 0;
    for d in ordered.take(MAX_DIAGNOSTICS) {
        let d = diagnostic_to_pb(&lines, d);
        let size = prost::Message::encoded_len(&d) + 4;
        if budget.is_some_and(|b| bytes + size > b) && !listed.is_empty() {
            break;
        }
        bytes += size;
        listed.push(d);
    }
    let omitted = u32::try_from(diagnostics.len() - listed.len()).unwrap_or(u32::MAX);
    (listed, omitted)
}

/// The message of a deploy refused for its errors: how many, and the first few.
pub(super) fn compile_failure_message(listed: &[pb::Diagnostic], errors: usize) -> String {
    let first: Vec<String> = listed
        .iter()
        .filter(|d| d.severity == "error")
        .take(3)
        .map(|d| {
            clip_to(
                format!("{}:{}: {} {}", d.line, d.column, d.code, d.message),
                160,
            )
        })
        .collect();
    let more = errors.saturating_sub(first.len());
    let mut message = format!(
        "the program does not compile ({errors} error{}): {}",
        if errors == 1 { "" } else { "s" },
        first.join("; ")
    );
    if more > 0 {
        message.push_str(&format!("; and {more} more (see the status details)"));
    }
    message
}
