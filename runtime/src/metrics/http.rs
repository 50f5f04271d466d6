//! The node's HTTP listener (`--metrics ADDR`): `/metrics` for Prometheus, and the
//! admin page. HTTP/1.1 with hyper; TLS with the node's certificate when the node
//! serves TLS; when the node has tokens, every request needs a bearer token whose
//! role may read status (`reader` or `admin`), as Prometheus sends with
//! `authorization: { credentials_file: ... }`.
//!
//! Invariant: the listener only reads; nothing it serves changes the node.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;

use super::Metrics;

/// What the listener serves.
#[derive(Debug)]
pub struct App {
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// The node's tokens (checked when enabled).
    pub tokens: Arc<crate::auth::Tokens>,
    /// The node's service (its status, documents).
    pub service: crate::api::Service,
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert("content-type", value);
    }
    response
}

/// The header as `Bearer <token>`: a Basic one (what a browser sends) carries the
/// token as its password (any user name).
fn bearer(header: &str) -> String {
    use base64::Engine;
    let basic = header.strip_prefix("Basic ").and_then(|encoded| {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (_, token) = text.split_once(':')?;
        Some(format!("Bearer {token}"))
    });
    basic.unwrap_or_else(|| header.to_owned())
}

/// Refuses a request without a token allowed to read status, when tokens are on.
fn admit<B>(app: &App, request: &Request<B>) -> Result<(), Box<Reply>> {
    if !app.tokens.enabled() {
        return Ok(());
    }
    let header = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(bearer);
    let principal = app
        .tokens
        .authenticate(header.as_deref())
        .map_err(|status| {
            let mut r = reply(
                StatusCode::UNAUTHORIZED,
                "text/plain; charset=utf-8",
                format!("{}\n", status.message()),
            );
            // Browsers ask for Basic credentials (the token as the password); Prometheus
            // sends a bearer token.
            if let Ok(value) = "Basic realm=\"datamesh\", Bearer".parse() {
                r.headers_mut().insert("www-authenticate", value);
            }
            r
        })?;
    crate::auth::authorize(&principal, "Status").map_err(|status| {
        Box::new(reply(
            StatusCode::FORBIDDEN,
            "text/plain; charset=utf-8",
            format!("{}\n", status.message()),
        ))
    })
}

async fn handle<B>(app: Arc<App>, request: Request<B>) -> Result<Reply, Infallible> {
    if let Err(refused) = admit(&app, &request) {
        return Ok(*refused);
    }
    if request.method() != hyper::Method::GET {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET\n",
        ));
    }
    let path = request.uri().path();
    Ok(match path {
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            app.metrics.encode(),
        ),
        _ => match crate::admin::page(&app.service, path, request.uri().query()).await {
            Some((content_type, body)) => reply(StatusCode::OK, content_type, body),
            None => reply(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "not found: /metrics, or the admin page at /\n",
            ),
        },
    })
}

fn serve_connection<I>(app: Arc<App>, io: I)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let service = hyper::service::service_fn(move |request| handle(app.clone(), request));
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(io), service)
            .await;
    });
}

/// Completes once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serves `app` on `listener` (with TLS when `tls` is set) until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<crate::tls::ServerTls>>,
    app: Arc<App>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    match tls {
        Some(tls) => {
            use tokio_stream::StreamExt;
            let mut incoming = crate::tls::incoming(listener, tls);
            loop {
                tokio::select! {
                    () = stopped(&mut stop) => return,
                    next = incoming.next() => match next {
                        Some(Ok(conn)) => serve_connection(app.clone(), conn),
                        Some(Err(_)) => {}
                        None => return,
                    },
                }
            }
        }
        None => loop {
            tokio::select! {
                () = stopped(&mut stop) => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => serve_connection(app.clone(), stream),
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics listener: cannot accept a connection");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
            }
        },
    }
}
