//! TLS with rustls: the node's listener, its certificate reload, the identity a peer's
//! certificate proves, and the clients' side (the CLI, `bench` and the node's own links).
//!
//! **The listener.** With `tls_cert` and `tls_key` every TCP connection is TLS (HTTP/2
//! by ALPN). With `tls_ca` as well, a client may present a certificate signed by that
//! CA (mutual TLS): a certificate whose subject alternative names hold the URI
//! `datamesh://NAME` proves the connection is node `NAME`'s, which is what the export
//! stream checks ([`ConnInfo::peer`]). A certificate from another CA fails the
//! handshake; a client without one still connects and is then held to its token.
//!
//! A plaintext gRPC client that reaches the TLS port is not left with a broken
//! connection: its connection is told apart by its first byte (an HTTP/2 preface
//! starts with `P`, a TLS record with 0x16) and served only to be answered, on every
//! call, with FAILED_PRECONDITION saying to connect with `https://` ([`RequireTls`]).
//!
//! **Reload.** The files are read again on SIGHUP and when their size or time
//! changes (looked at every [`RELOAD`]); connections made from then on use the new
//! certificate, connections already open keep theirs, and files that do not load
//! (a half-written key, a certificate that does not match it) leave the old ones in
//! force with an error in the log.
//!
//! Invariants: a handshake never blocks the accept loop (each runs in its own task,
//! bounded by [`HANDSHAKE`], at most [`MAX_HANDSHAKES`] at once); a peer name is taken only from a certificate the
//! handshake verified against `tls_ca`.

pub mod dev;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// How long a client has to complete its TLS handshake.
pub const HANDSHAKE: Duration = Duration::from_secs(10);

/// The most TLS handshakes in progress at once: a connection beyond them is closed
/// at once, so that clients that connect and never finish a handshake cannot use up
/// the process's file descriptors (which the log needs for its segments).
pub const MAX_HANDSHAKES: usize = 1024;

/// How often the node looks at its certificate files for a change.
pub const RELOAD: Duration = Duration::from_secs(2);

/// The URI scheme of a node name in a certificate: `datamesh://NAME`.
pub const NAME_SCHEME: &str = "datamesh://";

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds nothing usable.
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The certificates and key do not make a configuration (a key that does not
    /// match the certificate, say).
    #[error("{0}")]
    Config(String),
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// The files of the node's TLS (config keys `tls_cert`, `tls_key`, `tls_ca`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The node's certificate chain (PEM), presented to clients and, by its links, to
    /// its peers.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA (PEM) that signs the mesh's certificates: client certificates are
    /// verified against it, and so are peers' certificates when this node connects
    /// to them.
    pub ca: Option<PathBuf>,
}

/// Reads every certificate of a PEM file.
///
/// # Errors
/// [`TlsError::File`]: unreadable, not PEM, or no certificate in it.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| file_error(path, e))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(path, "holds no certificate (BEGIN CERTIFICATE)"));
    }
    Ok(certs)
}

/// Reads the private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
///
/// # Errors
/// [`TlsError::File`]: unreadable or no key in it.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| file_error(path, e))?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| file_error(path, format!("holds no usable private key: {e}")))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| file_error(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// The rustls configuration the files make.
///
/// # Errors
/// [`TlsError`] naming the file or the mismatch.
pub fn server_config(files: &TlsFiles) -> Result<rustls::ServerConfig, TlsError> {
    let certs = read_certs(&files.cert)?;
    let key = read_key(&files.key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.ca {
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca)?),
                provider(),
            )
            // Clients without a certificate (the CLI, services) connect and are held to
            // their tokens; a certificate, when presented, must verify.
            .allow_unauthenticated()
            .build()
            .map_err(|e| file_error(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        TlsError::Config(format!(
            "the key {} does not go with the certificate {}: {e}",
            files.key.display(),
            files.cert.display()
        ))
    })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The node name a certificate proves: its `datamesh://NAME` subject alternative name.
pub fn peer_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let names = parsed.subject_alternative_name().ok()??;
    names
        .value
        .general_names
        .iter()
        .find_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => uri
                .strip_prefix(NAME_SCHEME)
                .map(|n| n.trim_end_matches('/').to_owned())
                .filter(|n| crate::mesh::check_name(n).is_ok()),
            _ => None,
        })
}

/// What identifies a file's content for reload purposes.
type Stamp = Vec<Option<(SystemTime, u64)>>;

fn stamp(files: &TlsFiles) -> Stamp {
    [Some(&files.cert), Some(&files.key), files.ca.as_ref()]
        .into_iter()
        .flatten()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// The listener's TLS: the configuration in force, replaced when the files change.
#[derive(Debug)]
pub struct ServerTls {
    files: TlsFiles,
    current: RwLock<Arc<rustls::ServerConfig>>,
    seen: Mutex<Stamp>,
}

impl ServerTls {
    /// Loads the files.
    ///
    /// # Errors
    /// [`TlsError`] when they do not make a configuration.
    pub fn load(files: TlsFiles) -> Result<ServerTls, TlsError> {
        let seen = stamp(&files);
        let config = server_config(&files)?;
        Ok(ServerTls {
            files,
            current: RwLock::new(Arc::new(config)),
            seen: Mutex::new(seen),
        })
    }

    /// Whether client certificates are verified (a CA is configured).
    pub fn verifies_peers(&self) -> bool {
        self.files.ca.is_some()
    }

    /// The files.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    fn acceptor(&self) -> Option<TlsAcceptor> {
        self.current
            .read()
            .ok()
            .map(|c| TlsAcceptor::from(c.clone()))
    }

    /// Reads the files again (unless `only_if_changed` and they look unchanged) and
    /// puts the new configuration in force; returns whether it did.
    ///
    /// # Errors
    /// [`TlsError`]: the files do not load; the configuration in force stays.
    pub fn reload(&self, only_if_changed: bool) -> Result<bool, TlsError> {
        let now = stamp(&self.files);
        if only_if_changed && self.seen.lock().is_ok_and(|seen| *seen == now) {
            return Ok(false);
        }
        if let Ok(mut seen) = self.seen.lock() {
            // A file that fails to load is not retried until it changes again.
            *seen = now;
        }
        let config = server_config(&self.files)?;
        if let Ok(mut current) = self.current.write() {
            *current = Arc::new(config);
        }
        Ok(true)
    }

    /// Reloads on SIGHUP and when the files change, until `stop` turns true.
    pub async fn watch(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(RELOAD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let forced = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tick.tick() => false,
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => true,
            };
            match self.reload(!forced) {
                Ok(true) => tracing::info!(
                    cert = %self.files.cert.display(),
                    "TLS certificate reloaded: new connections use it"
                ),
                Ok(false) => {}
                Err(e) => tracing::error!(
                    error = %e,
                    "cannot reload the TLS files: the certificate loaded before stays in force"
                ),
            }
        }
    }
}

/// A connection on the TLS listener.
#[derive(Debug)]
pub enum Conn {
    /// A TLS connection.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// A plaintext HTTP/2 client on the TLS port, served only to be told to use TLS.
    Plain(TcpStream),
}

/// What a request knows of its connection on the TLS listener (a request extension).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address.
    pub remote: Option<SocketAddr>,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The node name the client's verified certificate proves.
    pub peer: Option<String>,
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        match self {
            Conn::Tls(stream) => {
                let (tcp, session) = stream.get_ref();
                ConnInfo {
                    remote: tcp.peer_addr().ok(),
                    tls: true,
                    peer: session
                        .peer_certificates()
                        .and_then(|certs| certs.first())
                        .and_then(peer_name),
                }
            }
            Conn::Plain(tcp) => ConnInfo {
                remote: tcp.peer_addr().ok(),
                tls: false,
                peer: None,
            },
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Tls(s) => s.is_write_vectored(),
            Conn::Plain(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The connections of a TLS listener, handshakes done, as a stream for the server.
/// The accept loop ends when the stream is dropped (the server stopped).
pub fn incoming(
    listener: TcpListener,
    tls: Arc<ServerTls>,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<Conn>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => return,
            };
            let (stream, remote) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Without TCP_NODELAY, Nagle's algorithm and delayed ACKs hold small HTTP/2
            // frames back for tens of milliseconds per request.
            let _ = stream.set_nodelay(true);
            let Some(acceptor) = tls.acceptor() else {
                continue;
            };
            let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                tracing::warn!(%remote, "{MAX_HANDSHAKES} TLS handshakes in progress: closing a new connection");
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE, handshake(stream, acceptor)).await {
                    Ok(Ok(conn)) => {
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%remote, error = %e, "TLS handshake failed");
                    }
                    Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

async fn handshake(stream: TcpStream, acceptor: TlsAcceptor) -> std::io::Result<Conn> {
    let mut first = [0u8; 1];
    let n = stream.peek(&mut first).await?;
    if n == 1 && first[0] == b'P' {
        // "PRI * HTTP/2.0": a plaintext gRPC client.
        return Ok(Conn::Plain(stream));
    }
    Ok(Conn::Tls(Box::new(acceptor.accept(stream).await?)))
}

/// Answers every call that came over plaintext to the TLS listener with
/// FAILED_PRECONDITION (a tower layer around the whole router).
#[derive(Debug, Clone)]
pub struct RequireTls<S> {
    inner: S,
}

/// The layer making [`RequireTls`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RequireTlsLayer;

impl<S> tower::Layer<S> for RequireTlsLayer {
    type Service = RequireTls<S>;

    fn layer(&self, inner: S) -> RequireTls<S> {
        RequireTls { inner }
    }
}

type Reply = tonic::codegen::http::Response<tonic::body::Body>;

impl<S, B> tower::Service<tonic::codegen::http::Request<B>> for RequireTls<S>
where
    S: tower::Service<tonic::codegen::http::Request<B>, Response = Reply>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Reply;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Reply, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: tonic::codegen::http::Request<B>) -> Self::Future {
        if request
            .extensions()
            .get::<ConnInfo>()
            .is_some_and(|c| !c.tls)
        {
            let status = tonic::Status::failed_precondition(
                "this node serves TLS: connect with https://HOST:PORT (and `--ca FILE` when its certificate is not signed by a public CA)",
            );
            return Box::pin(async move { Ok(status.into_http::<tonic::body::Body>()) });
        }
        let reply = self.inner.call(request);
        Box::pin(reply)
    }
}

/// A client's TLS: what it trusts and what it presents (the CLI's `--ca`,
/// `--client-cert`, `--client-key`; a node's links use its own `tls_ca`, `tls_cert` and `tls_key`). Used
/// for `https://` addresses only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// The CA to verify the node's certificate against; without one, the system's
    /// roots.
    pub ca: Option<PathBuf>,
    /// A client certificate chain (PEM), with `key`.
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub key: Option<PathBuf>,
}

impl ClientTls {
    /// The client side of the node's own TLS files (for its links to peers).
    pub fn of_node(files: Option<&TlsFiles>) -> ClientTls {
        match files {
            Some(files) => ClientTls {
                ca: files.ca.clone(),
                cert: Some(files.cert.clone()),
                key: Some(files.key.clone()),
            },
            None => ClientTls::default(),
        }
    }

    /// tonic's configuration, the files read now.
    ///
    /// # Errors
    /// [`TlsError`] naming a file that does not load, or a certificate without key.
    pub fn config(&self) -> Result<tonic::transport::ClientTlsConfig, TlsError> {
        let mut config = tonic::transport::ClientTlsConfig::new();
        config = match &self.ca {
            Some(ca) => {
                // Checked here, so that a wrong file is named instead of failing every
                // handshake.
                roots(ca)?;
                let pem = std::fs::read(ca).map_err(|e| file_error(ca, e))?;
                config.ca_certificate(tonic::transport::Certificate::from_pem(pem))
            }
            None => config.with_native_roots(),
        };
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                read_certs(cert)?;
                read_key(key)?;
                let cert = std::fs::read(cert).map_err(|e| file_error(cert, e))?;
                let key_pem = std::fs::read(key).map_err(|e| file_error(key, e))?;
                config = config.identity(tonic::transport::Identity::from_pem(cert, key_pem));
            }
            (None, None) => {}
            _ => {
                return Err(TlsError::Config(
                    "a client certificate needs its key, and a key its certificate (--client-cert with --client-key)"
                        .to_owned(),
                ));
            }
        }
        Ok(config)
    }
}
