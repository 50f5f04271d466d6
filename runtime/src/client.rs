//! The client side of the `datamesh` CLI: each command talks gRPC to a node and prints
//! JSON (results on stdout, errors on stderr).

use std::io::Write;

use tonic::transport::Channel;

use crate::api::pb;
use pb::data_mesh_client::DataMeshClient;

/// A CLI failure: the message to print and the exit code.
#[derive(Debug)]
pub struct CliError {
    /// What to print on stderr.
    pub message: String,
    /// Exit code.
    pub code: u8,
}

impl CliError {
    fn new(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            code: 1,
        }
    }

    /// A mistake in how the command was invoked (its flags or configuration): exit 2.
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            code: 2,
        }
    }
}

impl From<tonic::Status> for CliError {
    fn from(status: tonic::Status) -> Self {
        CliError::new(format!("{} ({:?})", status.message(), status.code()))
    }
}

/// Prints one result line; a closed stdout (`| head`) is not an error.
fn emit(text: &impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
}

/// Connects to a node.
///
/// # Errors
/// When the URL is invalid or nothing answers there.
pub async fn connect(url: &str) -> Result<DataMeshClient<Channel>, CliError> {
    let unreachable = |e: &dyn std::fmt::Display| {
        CliError::new(format!(
            "cannot reach a node at {url}: {e} (is `datamesh serve` running? set --node or DATAMESH_NODE)"
        ))
    };
    let channel = if let Some(path) = url.strip_prefix("unix:") {
        // The URI is not used to connect: the connector opens the socket.
        let path = std::path::PathBuf::from(path);
        tonic::transport::Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            }))
            .await
            .map_err(|e| unreachable(&e))?
    } else {
        let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
            .map_err(|e| CliError::new(format!("invalid node URL `{url}`: {e}")))?;
        endpoint
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| unreachable(&e))?
    };
    Ok(DataMeshClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20))
}

/// `datamesh promote NAME VERSION`: prints `{"active": "name@vN"}`.
///
/// # Errors
/// The node's refusal (unknown version, not caught up, faulted).
pub async fn promote(
    client: &mut DataMeshClient<Channel>,
    name: String,
    version: u32,
) -> Result<(), CliError> {
    let r = client
        .promote(pb::PromoteRequest { name, version })
        .await?
        .into_inner();
    emit(&serde_json::json!({ "active": r.active }));
    Ok(())
}

/// `datamesh retire NAME VERSION`: prints `{"retired": ..., "active": ...}`.
///
/// # Errors
/// The node's refusal (unknown version, the promoted version).
pub async fn retire(
    client: &mut DataMeshClient<Channel>,
    name: String,
    version: u32,
) -> Result<(), CliError> {
    let r = client
        .retire(pb::RetireRequest { name, version })
        .await?
        .into_inner();
    let active = if r.active.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::Value::String(r.active)
    };
    emit(&serde_json::json!({ "retired": r.retired, "active": active }));
    Ok(())
}

/// `datamesh deploy FILE`.
///
/// # Errors
/// Unreadable file, diagnostics (rendered against the local source), conflicts.
pub async fn deploy(
    client: &mut DataMeshClient<Channel>,
    path: &std::path::Path,
) -> Result<(), CliError> {
    let source = std::fs::read_to_string(path)
        .map_err(|e| CliError::new(format!("cannot read {}: {e}", path.display())))?;
    let origin = path.display().to_string();
    match client
        .deploy(pb::DeployRequest {
            source: source.clone(),
            origin: origin.clone(),
        })
        .await
    {
        Ok(response) => {
            let r = response.into_inner();
            print_diagnostics(&r.diagnostics, &origin, &source);
            let out = serde_json::json!({
                "started": r.started,
                "unchanged": r.unchanged,
                "declared": r.declared,
            });
            emit(&out);
            Ok(())
        }
        Err(status)
            if status.code() == tonic::Code::InvalidArgument && !status.details().is_empty() =>
        {
            let details: pb::DeployResponse = prost::Message::decode(status.details())
                .map_err(|_| CliError::from(status.clone()))?;
            print_diagnostics(&details.diagnostics, &origin, &source);
            Err(CliError::new(format!(
                "{} was not deployed",
                path.display()
            )))
        }
        Err(status) => Err(status.into()),
    }
}

fn print_diagnostics(diagnostics: &[pb::Diagnostic], origin: &str, source: &str) {
    if diagnostics.is_empty() {
        return;
    }
    let converted: Vec<datamesh_compiler::diag::Diagnostic> = diagnostics
        .iter()
        .map(|d| {
            let span = datamesh_compiler::ast::Span::new(d.start as usize, d.end as usize);
            let code: &'static str = Box::leak(d.code.clone().into_boxed_str());
            let mut out = if d.severity == "error" {
                datamesh_compiler::diag::Diagnostic::error(code, d.message.clone(), span)
            } else {
                datamesh_compiler::diag::Diagnostic::warning(code, d.message.clone(), span)
            };
            out = out.label(d.label.clone());
            if !d.help.is_empty() {
                out = out.help(d.help.clone());
            }
            out
        })
        .collect();
    let handler =
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_width(100);
    let named = std::sync::Arc::new(miette::NamedSource::new(origin, source.to_owned()));
    let mut text = String::new();
    for d in converted {
        let _ = handler.render_report(&mut text, &d.with_source(named.clone()));
        text.push('\n');
    }
    eprint!("{text}");
}

/// One event line of a `.jsonl` file: `{"type", "data", "stream", "id"}`.
///
/// # Errors
/// A message naming the problem.
pub fn event_from_line(line: &str) -> Result<pb::Event, String> {
    let json: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let object = json.as_object().ok_or("each line must be a JSON object")?;
    if let Some(peer) = object.get("from") {
        return Err(format!(
            "this event comes from peer {peer}: importing from peers is not supported by the node yet (`dmc run` folds such lines offline)"
        ));
    }
    for key in object.keys() {
        if !["type", "data", "stream", "id", "time"].contains(&key.as_str()) {
            return Err(format!(
                "unknown key `{key}` (allowed: type, data, stream, id; time is set by the node)"
            ));
        }
    }
    let text = |k: &str| {
        object
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let r#type = text("type");
    if r#type.is_empty() {
        return Err("missing `type`".to_owned());
    }
    Ok(pb::Event {
        r#type,
        data: object
            .get("data")
            .map_or_else(|| "{}".to_owned(), ToString::to_string),
        stream: text("stream"),
        id: text("id"),
    })
}

/// `datamesh append --file EVENTS.jsonl`: appends in requests of 1,000 events.
///
/// # Errors
/// A bad line (nothing is sent then) or a rejected request.
pub async fn append_file(
    client: &mut DataMeshClient<Channel>,
    path: &std::path::Path,
) -> Result<(), CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::new(format!("cannot read {}: {e}", path.display())))?;
    let mut events = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        events.push(
            event_from_line(line)
                .map_err(|e| CliError::new(format!("{}:{}: {e}", path.display(), n + 1)))?,
        );
    }
    let mut positions = Vec::new();
    for chunk in events.chunks(1000) {
        let r = client
            .append(pb::AppendRequest {
                events: chunk.to_vec(),
                expected: Vec::new(),
            })
            .await?
            .into_inner();
        positions.extend(r.positions);
    }
    emit(
        &serde_json::json!({ "appended": positions.len(), "first": positions.first(), "last": positions.last() }),
    );
    Ok(())
}

/// `datamesh append TYPE JSON`.
///
/// # Errors
/// A rejected request.
pub async fn append_one(
    client: &mut DataMeshClient<Channel>,
    event: pb::Event,
    expect: Option<i64>,
) -> Result<(), CliError> {
    let expected = match expect {
        None => Vec::new(),
        Some(v) => {
            if event.stream.is_empty() {
                return Err(CliError::new("--expect-version needs --stream"));
            }
            let expect = if v < 0 {
                pb::expected_version::Expect::NoStream(true)
            } else {
                pb::expected_version::Expect::Exact(v as u64)
            };
            vec![pb::ExpectedVersion {
                stream: event.stream.clone(),
                expect: Some(expect),
            }]
        }
    };
    let r = client
        .append(pb::AppendRequest {
            events: vec![event],
            expected,
        })
        .await?
        .into_inner();
    emit(
        &serde_json::json!({ "positions": r.positions, "deduplicated": r.deduplicated, "head": r.head }),
    );
    Ok(())
}

/// `datamesh get PROJECTION KEY`.
///
/// # Errors
/// No such projection or document (exit 1).
pub async fn get(
    client: &mut DataMeshClient<Channel>,
    projection: String,
    key: String,
    version: u32,
    min_position: u64,
) -> Result<(), CliError> {
    let r = client
        .get(pb::GetRequest {
            projection,
            key,
            min_position,
            version,
        })
        .await?
        .into_inner();
    emit(&r.document);
    Ok(())
}

/// `datamesh scan PROJECTION`: one `{"key", "document"}` JSON line per document,
/// following pages up to `limit` documents.
///
/// # Errors
/// A rejected request.
pub async fn scan(
    client: &mut DataMeshClient<Channel>,
    projection: String,
    prefix: String,
    limit: u32,
    version: u32,
) -> Result<(), CliError> {
    let mut token = String::new();
    let mut printed = 0u32;
    let mut out = std::io::stdout().lock();
    loop {
        let page = (limit - printed).min(1000);
        let r = client
            .scan(pb::ScanRequest {
                projection: projection.clone(),
                version,
                prefix: prefix.clone(),
                limit: page,
                page_token: token,
                ..Default::default()
            })
            .await?
            .into_inner();
        for d in &r.documents {
            let doc: serde_json::Value = serde_json::from_str(&d.document).unwrap_or_default();
            let _ = writeln!(
                out,
                "{}",
                serde_json::json!({ "key": d.key, "document": doc })
            );
        }
        printed += r.documents.len() as u32;
        if r.next_page_token.is_empty() || printed >= limit {
            return Ok(());
        }
        token = r.next_page_token;
    }
}

fn record_json(e: &pb::EventRecord) -> serde_json::Value {
    let data: serde_json::Value = serde_json::from_str(&e.data).unwrap_or(serde_json::Value::Null);
    serde_json::json!({
        "position": e.position,
        "type": e.r#type,
        "data": data,
        "stream": e.stream,
        "stream_version": e.stream_version,
        "id": e.id,
        "time": e.time,
    })
}

/// `datamesh tail`: one JSON line per event; stops at the head unless `follow`.
///
/// # Errors
/// A failed request.
pub async fn tail(
    client: &mut DataMeshClient<Channel>,
    from: u64,
    follow: bool,
) -> Result<(), CliError> {
    if follow {
        let mut stream = client
            .subscribe(pb::SubscribeRequest { from })
            .await?
            .into_inner();
        while let Some(event) = stream.message().await? {
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{}", record_json(&event))
                .and_then(|()| out.flush())
                .is_err()
            {
                return Ok(());
            }
        }
        return Ok(());
    }
    let mut position = from;
    loop {
        let r = client
            .read(pb::ReadRequest {
                from: position,
                limit: 1000,
                stream: String::new(),
            })
            .await?
            .into_inner();
        let mut out = std::io::stdout().lock();
        for e in &r.events {
            if writeln!(out, "{}", record_json(e)).is_err() {
                return Ok(());
            }
            position = e.position + 1;
        }
        if r.events.is_empty() || position >= r.head {
            return Ok(());
        }
    }
}

/// `datamesh status`: the node's head and projections as JSON.
///
/// # Errors
/// A failed request.
pub async fn status(client: &mut DataMeshClient<Channel>) -> Result<(), CliError> {
    let r = client.status(pb::StatusRequest {}).await?.into_inner();
    let projections: Vec<serde_json::Value> = r
        .projections
        .iter()
        .map(|p| {
            serde_json::json!({
                "projection": format!("{}@v{}", p.name, p.version),
                "active": p.active,
                "position": p.position,
                "lag": p.lag,
                "state": p.state,
                "fault": if p.fault.is_empty() { serde_json::Value::Null } else { p.fault.clone().into() },
            })
        })
        .collect();
    let out = serde_json::json!({
        "head": r.head,
        "engine": r.engine,
        "strict": r.strict,
        "log_error": if r.log_error.is_empty() { serde_json::Value::Null } else { r.log_error.clone().into() },
        "projections": projections,
    });
    emit(&serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(())
}
