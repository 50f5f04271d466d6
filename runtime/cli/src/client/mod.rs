//! The client side of the `datamesh` CLI: each command talks gRPC to a node and prints
//! JSON (results on stdout, errors on stderr).

pub mod status;
mod transport;

pub use transport::{Client, GrpcClient};

use std::io::Write;
use std::time::Duration;

use datamesh_runtime::admin::status_json;
use datamesh_runtime::connect::{Bearer, channel};
use tonic::transport::Channel;

use datamesh_runtime::api::pb;
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
pub async fn connect(url: &str) -> Result<Client, CliError> {
    // The wire protocol's unary calls, with a gRPC channel beside them (to the same
    // listener, opened at the first streaming call) for the rest.
    let wire_to = url
        .strip_prefix("dmw://")
        .map(|rest| format!("http://{rest}"))
        .or_else(|| {
            url.strip_prefix("dmw+unix:")
                .map(|rest| format!("unix:{rest}"))
        });
    if let Some(grpc_url) = wire_to {
        let wire =
            datamesh_runtime::wire::WireClient::connect(url, TOKEN.get().map(String::as_str))
                .await
                .map_err(|e| {
                    CliError::new(format!(
                        "{e} (is `datamesh serve` running? set --node or DATAMESH_NODE)"
                    ))
                })?;
        let channel = lazy_channel(&grpc_url)?;
        return Ok(Client::new(grpc_client(channel)?, Some(wire)));
    }
    let tls = TLS.get().cloned().unwrap_or_default();
    let channel = channel(url, &tls).await.map_err(|e| {
        let hint = if e.contains("certificate") || e.contains("TLS") {
            "the node's certificate must be signed by the CA given with --ca FILE (DATAMESH_CA), and name the host of --node"
        } else if e.contains("InvalidContentType") || e.contains("corrupt message") {
            "is the node serving TLS? an `https://` address needs a node started with --tls-cert"
        } else {
            "is `datamesh serve` running? set --node or DATAMESH_NODE"
        };
        CliError::new(format!("{e} ({hint})"))
    })?;
    Ok(Client::new(grpc_client(channel)?, None))
}

/// The gRPC client on `channel`, sending the token of this process, if any.
fn grpc_client(channel: Channel) -> Result<GrpcClient, CliError> {
    let bearer = match TOKEN.get() {
        Some(token) => Bearer::new(token).map_err(CliError::usage)?,
        None => Bearer::none(),
    };
    Ok(DataMeshClient::with_interceptor(channel, bearer)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20))
}

/// A plaintext gRPC channel to `url` (`http://` or `unix:`) that connects at its first
/// call.
fn lazy_channel(url: &str) -> Result<Channel, CliError> {
    if let Some(path) = url.strip_prefix("unix:") {
        let path = std::path::PathBuf::from(path);
        return Ok(tonic::transport::Endpoint::from_static("http://localhost")
            .connect_with_connector_lazy(tower::service_fn(move |_: tonic::transport::Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            })));
    }
    tonic::transport::Endpoint::from_shared(url.to_owned())
        .map(|endpoint| endpoint.tcp_nodelay(true).connect_lazy())
        .map_err(|e| CliError::usage(format!("invalid node URL `{url}`: {e}")))
}

/// The token the clients of this process send (`--token-file`, `DATAMESH_TOKEN`).
static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Makes every client [`connect`] makes from now on send `token`.
pub fn use_token(token: String) {
    let _ = TOKEN.set(token);
}

/// The TLS the clients of this process use for `https://` nodes (`--ca`,
/// `--client-cert`, `--client-key`).
static TLS: std::sync::OnceLock<datamesh_runtime::tls::ClientTls> = std::sync::OnceLock::new();

/// Makes every client [`connect`] makes from now on use `tls` for `https://` nodes.
pub fn use_tls(tls: datamesh_runtime::tls::ClientTls) {
    let _ = TLS.set(tls);
}

/// `datamesh link reset PEER --from N`: prints `{"reset": PEER, "from": N, "position": P}`
/// (P: where the node's log keeps the reset).
///
/// # Errors
/// The node's refusal (no link to that peer).
pub async fn link_reset(
    client: &mut Client,
    peer: String,
    from: u64,
    note: String,
) -> Result<(), CliError> {
    let r = client
        .link_reset(pb::LinkResetRequest {
            peer: peer.clone(),
            from_position: from,
            note,
        })
        .await?
        .into_inner();
    emit(&serde_json::json!({ "reset": peer, "from": from, "position": r.position }));
    Ok(())
}

/// `datamesh promote NAME VERSION`: prints `{"active": "name@vN"}`.
///
/// # Errors
/// The node's refusal (unknown version, not caught up, faulted).
pub async fn promote(client: &mut Client, name: String, version: u32) -> Result<(), CliError> {
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
pub async fn retire(client: &mut Client, name: String, version: u32) -> Result<(), CliError> {
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

/// `datamesh deploy FILE [--wait [SECONDS]]`.
///
/// # Errors
/// Unreadable file, diagnostics (rendered against the local source), conflicts; with
/// `wait`, a started version that faults or has not caught up in time.
pub async fn deploy(
    client: &mut Client,
    path: &std::path::Path,
    wait: Option<u64>,
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
            print_diagnostics(&r.diagnostics, r.omitted, &origin, &source);
            let mut out = serde_json::json!({
                "started": r.started,
                "unchanged": r.unchanged,
                "declared": r.declared,
            });
            // The rest only when there is something to say, so the common line stays short.
            if let Some(map) = out.as_object_mut() {
                for (key, list) in [
                    ("exported", &r.exported),
                    ("imported", &r.imported),
                    ("retired", &r.retired),
                ] {
                    if !list.is_empty() {
                        map.insert(key.into(), list.clone().into());
                    }
                }
            }
            let waited = match wait {
                Some(seconds) => {
                    // The program's versions: those it started and those already running.
                    let versions: Vec<String> =
                        r.started.iter().chain(&r.unchanged).cloned().collect();
                    let waited = caught_up(client, &versions, Duration::from_secs(seconds)).await;
                    if let (Some(map), Ok((head, seconds))) = (out.as_object_mut(), &waited) {
                        map.insert("caught_up_to".into(), (*head).into());
                        map.insert("waited_seconds".into(), format!("{seconds:.3}").into());
                    }
                    waited.map(|_| ())
                }
                None => Ok(()),
            };
            emit(&out);
            waited
        }
        Err(status)
            if status.code() == tonic::Code::InvalidArgument && !status.details().is_empty() =>
        {
            let details = datamesh_runtime::api::deploy_diagnostics(&status)
                .ok_or_else(|| CliError::from(status.clone()))?;
            print_diagnostics(&details.diagnostics, details.omitted, &origin, &source);
            Err(CliError::new(format!(
                "{} was not deployed",
                path.display()
            )))
        }
        Err(status) => Err(status.into()),
    }
}

/// Waits until each of `labels` (`name@vN`, just deployed) has applied every event the
/// log holds now: a scan of one document with `min_position` at the head, which the
/// node answers as soon as the version gets there (each call waits at most 30 s, so
/// it is asked again until `limit`). Returns the head waited for and the seconds it
/// took.
async fn caught_up(
    client: &mut Client,
    labels: &[String],
    limit: Duration,
) -> Result<(u64, f64), CliError> {
    let started = std::time::Instant::now();
    let head = client
        .status(pb::StatusRequest {})
        .await
        .map_err(CliError::from)?
        .into_inner()
        .head;
    for label in labels {
        let (name, version) = label
            .rsplit_once("@v")
            .and_then(|(n, v)| Some((n, v.parse::<u32>().ok()?)))
            .ok_or_else(|| CliError::new(format!("the node started `{label}`, not a NAME@vN")))?;
        loop {
            let left = limit.saturating_sub(started.elapsed());
            let mut request = tonic::Request::new(pb::ScanRequest {
                projection: name.to_owned(),
                version,
                min_position: head,
                limit: 1,
                ..pb::ScanRequest::default()
            });
            // At least a moment, so `--wait 0` asks once instead of failing unasked.
            request.set_timeout(left.clamp(Duration::from_millis(100), Duration::from_secs(30)));
            match client.scan(request).await {
                Ok(_) => break,
                Err(status)
                    if status.code() == tonic::Code::DeadlineExceeded && !left.is_zero() => {}
                Err(status) => {
                    return Err(CliError::new(format!(
                        "deployed, but not caught up: {} ({:?})",
                        status.message(),
                        status.code()
                    )));
                }
            }
        }
    }
    Ok((head, started.elapsed().as_secs_f64()))
}

/// A diagnostic as the node sent it, rendered against the local source.
#[derive(Debug)]
struct Remote {
    diagnostic: pb::Diagnostic,
    span: miette::SourceSpan,
    source: std::sync::Arc<miette::NamedSource<String>>,
}

impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.diagnostic.message)
    }
}

impl std::error::Error for Remote {}

impl miette::Diagnostic for Remote {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new(&self.diagnostic.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(if self.diagnostic.severity == "error" {
            miette::Severity::Error
        } else {
            miette::Severity::Warning
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        (!self.diagnostic.help.is_empty())
            .then(|| Box::new(&self.diagnostic.help) as Box<dyn std::fmt::Display>)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let label = &self.diagnostic.label;
        Some(Box::new(std::iter::once(
            miette::LabeledSpan::new_primary_with_span(
                (!label.is_empty()).then(|| label.clone()),
                self.span,
            ),
        )))
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(self.source.as_ref())
    }
}

/// Lines longer than this are not drawn with their source (the graphical renderer
/// struggles past a few thousand columns): the diagnostic is printed plainly.
const MAX_DRAWN_LINE: usize = 1000;

/// A diagnostic in plain text: `error[E0101]: message`, where, label and help.
fn plain(d: &pb::Diagnostic, origin: &str) -> String {
    let mut text = format!(
        "{}[{}]: {}\n  --> {origin}:{}:{}\n",
        d.severity, d.code, d.message, d.line, d.column
    );
    if !d.label.is_empty() {
        text.push_str(&format!("  = {}\n", d.label));
    }
    if !d.help.is_empty() {
        text.push_str(&format!("  help: {}\n", d.help));
    }
    text
}

/// The byte range of a diagnostic inside `source`, on character boundaries.
fn local_span(d: &pb::Diagnostic, source: &str) -> (usize, usize) {
    let floor = |mut i: usize| {
        i = i.min(source.len());
        while !source.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let start = floor(d.start as usize);
    (start, floor(d.end as usize).max(start))
}

/// Whether the line holding `at` is too long to draw.
fn long_line(source: &str, at: usize) -> bool {
    let line_start = source
        .get(..at)
        .and_then(|b| b.rfind('\n'))
        .map_or(0, |i| i + 1);
    let line_end = source
        .get(at..)
        .and_then(|a| a.find('\n'))
        .map_or(source.len(), |i| at + i);
    line_end - line_start > MAX_DRAWN_LINE
}

fn print_diagnostics(diagnostics: &[pb::Diagnostic], omitted: u32, origin: &str, source: &str) {
    if diagnostics.is_empty() && omitted == 0 {
        return;
    }
    let handler =
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_width(100);
    let named = std::sync::Arc::new(miette::NamedSource::new(origin, source.to_owned()));
    let mut text = String::new();
    for d in diagnostics {
        let (start, end) = local_span(d, source);
        if long_line(source, start) {
            text.push_str(&plain(d, origin));
        } else {
            let remote = Remote {
                diagnostic: d.clone(),
                span: (start, end - start).into(),
                source: named.clone(),
            };
            let before = text.len();
            if handler.render_report(&mut text, &remote).is_err() {
                text.truncate(before);
                text.push_str(&plain(d, origin));
            }
        }
        text.push('\n');
    }
    if omitted > 0 {
        text.push_str(&format!(
            "... and {omitted} more diagnostic{} the node did not send (run `dmc check` for all)\n",
            if omitted == 1 { "" } else { "s" }
        ));
    }
    eprint!("{text}");
}

/// One event line of a `.jsonl` file: `{"type", "data", "stream", "id"}`. A line with
/// `time` (the `dmc run` format) is refused unless `drop_time`: the API cannot carry a
/// client time (the log stamps each event when it appends it), and a time silently
/// replaced would be a different event.
///
/// # Errors
/// A message naming the problem.
pub fn event_from_line(line: &str, drop_time: bool) -> Result<pb::Event, String> {
    let json: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let object = json.as_object().ok_or("each line must be a JSON object")?;
    if let Some(peer) = object.get("from") {
        return Err(format!(
            "this event comes from peer {peer}: a node imports a peer's events through a link to that peer (`--peer NAME=ADDRESS` and the program's `import` block), not by append; `dmc run` folds such lines offline"
        ));
    }
    for key in object.keys() {
        if !["type", "data", "stream", "id", "time"].contains(&key.as_str()) {
            return Err(format!(
                "unknown key `{}` (allowed: type, data, stream, id; time is set by the node)",
                datamesh_compiler::exec::codec::excerpt(key)
            ));
        }
    }
    if object.contains_key("time") && !drop_time {
        return Err(
            "`time` cannot be appended: the node stamps each event with the time it appends it \
             (remove `time`, or pass --drop-time to append the file's events without their times)"
                .to_owned(),
        );
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

/// `datamesh append --file EVENTS.jsonl`: appends in requests of 1,000 events and
/// prints `{"appended": N, "deduplicated": M, "first", "last"}` (events whose ids were
/// all in the log already are deduplicated, not appended again; `first` and `last` are
/// the positions of the file's first and last events).
///
/// # Errors
/// A bad line (nothing is sent then) or a rejected request (the message says what the
/// requests before it appended).
pub async fn append_file(
    client: &mut Client,
    path: &std::path::Path,
    drop_time: bool,
) -> Result<(), CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::new(format!("cannot read {}: {e}", path.display())))?;
    let mut events = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        events.push(
            event_from_line(line, drop_time)
                .map_err(|e| CliError::new(format!("{}:{}: {e}", path.display(), n + 1)))?,
        );
    }
    let mut positions = Vec::new();
    let (mut appended, mut deduplicated) = (0usize, 0usize);
    let mut head = 0;
    // Progress on a terminal (stderr), once a file takes more than one request.
    let progress = {
        use std::io::IsTerminal;
        std::io::stderr().is_terminal() && events.len() > 1000
    };
    for chunk in events.chunks(1000) {
        if progress {
            eprint!(
                "\rappending {} of {} events ({:.0}%)",
                positions.len(),
                events.len(),
                positions.len() as f64 * 100.0 / events.len() as f64
            );
        }
        let r = match client
            .append(pb::AppendRequest {
                events: chunk.to_vec(),
                expected: Vec::new(),
                read_back: Vec::new(),
            })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(status) => {
                let before = if positions.is_empty() {
                    "nothing was appended".to_owned()
                } else {
                    format!(
                        "the {} events before it were appended ({appended}) or deduplicated \
                         ({deduplicated})",
                        positions.len()
                    )
                };
                return Err(CliError::new(format!(
                    "{} ({:?}) in the request of the file's events {} to {}; {before}",
                    status.message(),
                    status.code(),
                    positions.len(),
                    positions.len() + chunk.len() - 1
                )));
            }
        };
        if r.deduplicated {
            deduplicated += r.positions.len();
        } else {
            appended += r.positions.len();
        }
        head = r.head;
        positions.extend(r.positions);
    }
    if progress {
        // Clear the progress line.
        eprint!("\r{}\r", " ".repeat(60));
    }
    emit(&serde_json::json!({
        "appended": appended,
        "deduplicated": deduplicated,
        "first": positions.first(),
        "last": positions.last(),
        "head": head,
    }));
    Ok(())
}

/// `datamesh append TYPE JSON`.
///
/// # Errors
/// A rejected request.
pub async fn append_one(
    client: &mut Client,
    event: pb::Event,
    expect: Option<i64>,
    read_back: &[String],
) -> Result<(), CliError> {
    let read_back = read_back
        .iter()
        .map(|spec| {
            let (projection, key) = spec.split_once(':').ok_or_else(|| {
                CliError::usage(format!(
                    "--read-back `{spec}`: write PROJECTION:KEY (PROJECTION: for a \
                     projection without a key)"
                ))
            })?;
            Ok(pb::ReadBack {
                projection: projection.to_owned(),
                key: key.to_owned(),
                version: 0,
            })
        })
        .collect::<Result<Vec<_>, CliError>>()?;
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
            read_back,
        })
        .await?
        .into_inner();
    let mut out = serde_json::json!({ "positions": r.positions, "deduplicated": r.deduplicated, "head": r.head });
    if !r.read_back.is_empty()
        && let Some(map) = out.as_object_mut()
    {
        let reads: Vec<serde_json::Value> = r
            .read_back
            .iter()
            .map(|read| match &read.document {
                Some(doc) => serde_json::json!({
                    "document": serde_json::from_str::<serde_json::Value>(&doc.document)
                        .unwrap_or_else(|_| doc.document.clone().into()),
                    "position": doc.position,
                }),
                None => serde_json::json!({
                    "error": {
                        "code": format!("{:?}", tonic::Code::from_i32(read.code as i32)),
                        "message": read.message,
                    }
                }),
            })
            .collect();
        map.insert("read_back".into(), reads.into());
    }
    emit(&out);
    Ok(())
}

/// `datamesh get PROJECTION KEY`.
///
/// # Errors
/// No such projection or document (exit 1).
pub async fn get(
    client: &mut Client,
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
    client: &mut Client,
    projection: String,
    prefix: String,
    limit: u32,
    version: u32,
    after: Option<String>,
) -> Result<(), CliError> {
    let mut token = String::new();
    let mut printed = 0u32;
    let mut last_key: Option<String> = None;
    let mut out = std::io::stdout().lock();
    // `--after KEY` starts at KEY (the API's start is inclusive) and skips it.
    let mut skip = after.clone();
    loop {
        let page = (limit - printed).min(1000) + u32::from(skip.is_some());
        let r = client
            .scan(pb::ScanRequest {
                projection: projection.clone(),
                version,
                prefix: prefix.clone(),
                limit: page,
                page_token: token,
                start: if printed == 0 {
                    after.clone().unwrap_or_default()
                } else {
                    String::new()
                },
                ..Default::default()
            })
            .await?
            .into_inner();
        for d in &r.documents {
            if skip.take_if(|k| *k == d.key).is_some() {
                continue;
            }
            skip = None;
            if printed >= limit {
                // One more than asked for: there are more.
                eprintln!(
                    "(more documents: continue with --after {})",
                    shell_word(last_key.as_deref().unwrap_or_default())
                );
                return Ok(());
            }
            let doc: serde_json::Value = serde_json::from_str(&d.document).map_err(|e| {
                CliError::new(format!(
                    "the document at key `{}` is not readable JSON ({e}); nothing more is printed",
                    datamesh_compiler::exec::codec::excerpt(&d.key)
                ))
            })?;
            let _ = writeln!(
                out,
                "{}",
                serde_json::json!({ "key": d.key, "document": doc })
            );
            printed += 1;
            last_key = Some(d.key.clone());
        }
        if r.next_page_token.is_empty() {
            return Ok(());
        }
        if printed >= limit {
            eprintln!(
                "(more documents: continue with --after {})",
                shell_word(last_key.as_deref().unwrap_or_default())
            );
            return Ok(());
        }
        token = r.next_page_token;
    }
}

/// `text` quoted for a POSIX shell when it needs to be.
fn shell_word(text: &str) -> String {
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/@".contains(&b))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// An event as the CLI prints it, or an error when its data cannot be read as JSON
/// (never a `null` in its place).
fn record_json(e: &pb::EventRecord) -> Result<serde_json::Value, CliError> {
    let data: serde_json::Value = serde_json::from_str(&e.data).map_err(|error| {
        CliError::new(format!(
            "the event at position {} ({}) has data that is not readable JSON ({error}); \
             nothing more is printed (`datamesh tail --from {}` goes on after it)",
            e.position,
            datamesh_compiler::exec::codec::excerpt(&e.r#type),
            e.position + 1
        ))
    })?;
    let mut out = serde_json::json!({
        "position": e.position,
        "type": e.r#type,
        "data": data,
        "stream": e.stream,
        "stream_version": e.stream_version,
        "id": e.id,
        "time": e.time,
    });
    if !e.origin.is_empty()
        && let Some(map) = out.as_object_mut()
    {
        map.insert("origin".into(), e.origin.clone().into());
    }
    Ok(out)
}

/// `datamesh tail`: one JSON line per event; stops at the head unless `follow`.
///
/// # Errors
/// A failed request.
pub async fn tail(
    client: &mut Client,
    from: u64,
    follow: bool,
    stream: Option<String>,
) -> Result<(), CliError> {
    if let Some(stream) = stream {
        return tail_stream(client, stream, from, follow).await;
    }
    if follow {
        let mut stream = client
            .subscribe(pb::SubscribeRequest {
                from_position: from,
            })
            .await?
            .into_inner();
        while let Some(event) = stream.message().await? {
            let line = record_json(&event)?;
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                return Ok(());
            }
        }
        return Ok(());
    }
    let mut position = from;
    loop {
        let r = client
            .read(pb::ReadRequest {
                from_position: position,
                limit: 1000,
                stream: String::new(),
            })
            .await?
            .into_inner();
        let mut out = std::io::stdout().lock();
        for e in &r.events {
            let line = record_json(e)?;
            if writeln!(out, "{line}").is_err() {
                return Ok(());
            }
            position = e.position + 1;
        }
        if r.events.is_empty() || position >= r.head {
            return Ok(());
        }
    }
}

/// `tail --stream NAME`: the stream's events from stream version `from`; with
/// `follow`, new ones as they are appended (looked for every quarter of a second).
async fn tail_stream(
    client: &mut Client,
    stream: String,
    from: u64,
    follow: bool,
) -> Result<(), CliError> {
    let mut version = from;
    loop {
        let r = client
            .read(pb::ReadRequest {
                from_position: version,
                limit: 1000,
                stream: stream.clone(),
            })
            .await?
            .into_inner();
        let mut out = std::io::stdout().lock();
        for e in &r.events {
            let line = record_json(e)?;
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                return Ok(());
            }
            version = e.stream_version + 1;
        }
        drop(out);
        if r.events.is_empty() {
            if !follow {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }
}

/// `datamesh projections`: every deployed version as a table (`json`: one JSON object
/// per version).
///
/// # Errors
/// A failed request.
pub async fn projections(client: &mut Client, json: bool) -> Result<(), CliError> {
    let r = client
        .list_projections(pb::ListProjectionsRequest::default())
        .await?
        .into_inner();
    if json {
        for p in &r.projections {
            emit(&serde_json::json!({
                "projection": p.name,
                "version": p.version,
                "active": p.active,
                "promoted": p.promoted,
                "position": p.position,
                "state": p.state,
                "key": p.key,
                "fault": if p.fault.is_empty() { serde_json::Value::Null } else { p.fault.clone().into() },
            }));
        }
        return Ok(());
    }
    emit(&status::projections_table(&r.projections));
    Ok(())
}

/// `datamesh status`: the node, its projections and links as tables (`json`: as
/// JSON); `watch` redraws every second (with progress bars while versions catch up;
/// with `json`, one object per line) until interrupted.
///
/// # Errors
/// A failed request.
pub async fn status(client: &mut Client, json: bool, watch: bool) -> Result<(), CliError> {
    use std::io::IsTerminal;
    let terminal = std::io::stdout().is_terminal();
    loop {
        let r = client.status(pb::StatusRequest {}).await?.into_inner();
        let text = if json {
            let value = status_json(&r);
            if watch {
                value.to_string()
            } else {
                serde_json::to_string_pretty(&value).unwrap_or_default()
            }
        } else {
            status::table(&r, now_micros(), watch)
        };
        if watch && terminal && !json {
            // Home and clear, then the table: a redraw.
            emit(&format!("\x1b[H\x1b[2J{text}"));
        } else {
            emit(&text);
        }
        if !watch {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
