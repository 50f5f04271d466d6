//! A running node: opens the log and the store, starts the engine, serves gRPC (with
//! health and reflection) on a TCP address and optionally a Unix socket until a
//! shutdown signal, then finishes in-flight requests and stops the log writer after its
//! queued commits.
//!
//! The Unix socket is for the service that owns the node, on the same host: it skips
//! the TCP stack, which is about a third of the CPU a small request costs on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::api::{Limits, Service, pb};
use crate::engine::{Engine, EngineKind};
use crate::log::{Log, LogConfig};
use crate::store::Store;

/// How to run a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Data directory (log and store inside).
    pub data: PathBuf,
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// A Unix socket to serve gRPC on as well (clients on the same host connect with
    /// `--node unix:PATH`, skipping the TCP stack).
    pub socket: Option<PathBuf>,
    /// Reject events of undeclared types.
    pub strict: bool,
    /// Log segment size.
    pub segment_bytes: u64,
    /// Request limits.
    pub limits: Limits,
    /// The engine handlers run on.
    pub engine: EngineKind,
    /// The node's name and its peers.
    pub mesh: crate::links::MeshConfig,
    /// Serve an address other than loopback although the node has no TLS and no
    /// authentication (see [`check_exposure`]).
    pub insecure: bool,
    /// TLS on the TCP listener (and the certificate the node's links present).
    pub tls: Option<crate::tls::TlsFiles>,
    /// Log as JSON lines instead of text (`datamesh serve` sets up logging).
    pub log_json: bool,
    /// Serve Prometheus metrics (`/metrics`) and the admin page (`/`) over HTTP here.
    pub metrics: Option<SocketAddr>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data: PathBuf::from("datamesh-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            socket: None,
            strict: false,
            segment_bytes: 128 << 20,
            limits: Limits::default(),
            engine: EngineKind::default(),
            mesh: crate::links::MeshConfig::default(),
            insecure: false,
            tls: None,
            log_json: false,
            metrics: None,
        }
    }
}

/// Why a node could not run.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The log failed to open.
    #[error(transparent)]
    Log(#[from] crate::log::LogError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The engine failed to start.
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    /// The server failed.
    #[error("gRPC server: {0}")]
    Server(String),
    /// Binding or other I/O.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The configuration cannot work (a limit the log cannot store, an unsafe data
    /// directory).
    #[error("{0}")]
    Config(String),
}

/// Checks every configured limit against what the log can store: an event the API
/// accepts must fit one frame of the log, or it would be acknowledged and then be
/// unreadable.
///
/// # Errors
/// [`NodeError::Config`] naming the limit and what it may be.
pub fn check_limits(limits: &Limits) -> Result<(), NodeError> {
    // A frame's body holds the payload, the type, stream and id (each at most
    // `api::MAX_NAME` bytes) and fixed fields: keep 64 KiB for all but the payload.
    let most_payload = crate::log::MAX_BODY - (64 << 10);
    if limits.max_event_bytes > most_payload {
        return Err(NodeError::Config(format!(
            "max_event_bytes is {}, but the log stores events of at most {most_payload} bytes (a frame holds 64 MiB with its envelope): lower max_event_bytes",
            limits.max_event_bytes
        )));
    }
    // The whole request travels as one gRPC message and is written as one group.
    let most_request = 1usize << 30;
    if limits.max_bytes > most_request {
        return Err(NodeError::Config(format!(
            "max_request_bytes is {}, but a request may carry at most {most_request} bytes (one gRPC message, one group of the log): lower max_request_bytes",
            limits.max_bytes
        )));
    }
    Ok(())
}

/// Refuses to serve an address other than loopback unless the node has both TLS and
/// authentication (`auth`: it has an active token), or the operator said
/// `insecure`: without them, anyone who can reach such an address can deploy,
/// append, retire projections (deleting their documents) and read every event, or
/// read and alter them on the way. Loopback and the Unix socket (private to the
/// node's user) are for the services on the same host.
///
/// # Errors
/// [`NodeError::Config`] saying what to configure.
pub fn check_exposure(config: &NodeConfig, auth: bool) -> Result<(), NodeError> {
    check_address(config, config.listen, auth)?;
    match config.metrics {
        Some(metrics) => check_address(config, metrics, auth),
        None => Ok(()),
    }
}

fn check_address(config: &NodeConfig, listen: SocketAddr, auth: bool) -> Result<(), NodeError> {
    let tls = config.tls.is_some();
    if listen.ip().is_loopback() || config.insecure || (tls && auth) {
        return Ok(());
    }
    let missing = match (tls, auth) {
        (false, false) => "no TLS and no authentication",
        (false, true) => "no TLS (its tokens would cross the network in plain text)",
        _ => "no authentication (no active token)",
    };
    let configure = match (tls, auth) {
        (false, false) => format!(
            "give it a certificate (`--tls-cert FILE --tls-key FILE`; `datamesh cert dev` makes development ones) and an admin token (`datamesh token create --data {} --role admin`)",
            config.data.display()
        ),
        (false, true) => {
            "give it a certificate (`--tls-cert FILE --tls-key FILE`; `datamesh cert dev` makes development ones)".to_owned()
        }
        _ => format!(
            "create an admin token first (`datamesh token create --data {} --role admin`)",
            config.data.display()
        ),
    };
    Err(NodeError::Config(format!(
        "refusing to listen on {listen}: the node has {missing}, so anyone who can reach that address could deploy, append, retire projections and read every event. To serve a network, {configure}. Otherwise listen on loopback (`--listen 127.0.0.1:{}`, the default) or a Unix socket (`--socket PATH`), or pass `--insecure` (config `insecure = true`) to serve it anyway on a network you trust",
        listen.port()
    )))
}

/// Creates the data directory accessible to its owner only, or checks that an
/// existing one is: events are often personal data, and any local user could read
/// them from a directory others can enter (PostgreSQL refuses to start for the same
/// reason). An existing but empty directory (made with `mkdir`, say) is restricted
/// to its owner, since nothing in it could have been read yet.
///
/// # Errors
/// [`NodeError::Config`] for a directory with data in it that others can read or
/// enter; I/O errors.
pub fn check_data_dir(data: &std::path::Path) -> Result<(), NodeError> {
    use std::os::unix::fs::PermissionsExt;
    crate::log::private_dir(data)?;
    let mode = std::fs::metadata(data)?.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    if std::fs::read_dir(data)?.next().is_none() {
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(mode & 0o700))?;
        return Ok(());
    }
    Err(NodeError::Config(format!(
        "the data directory {} has mode {mode:o}: other users can read the events in it. Restrict it to its owner (`chmod 700 {}`) and start again",
        data.display(),
        data.display()
    )))
}

/// Runs a node until `shutdown` completes.
///
/// # Errors
/// [`NodeError`] when something cannot be opened or served.
pub async fn serve(
    config: NodeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let started = std::time::Instant::now();
    check_limits(&config.limits)?;
    let tokens = Arc::new(
        crate::auth::Tokens::load(&config.data).map_err(|e| NodeError::Config(e.to_string()))?,
    );
    check_exposure(&config, tokens.enabled())?;
    let exposed = !config.listen.ip().is_loopback();
    if exposed && !config.insecure {
        // Served to a network because it has tokens: revoking (or deleting) every
        // token must lock everyone out, not open the node to all.
        tokens.require();
    }
    let tls = match &config.tls {
        Some(files) => Some(Arc::new(
            crate::tls::ServerTls::load(files.clone())
                .map_err(|e| NodeError::Config(format!("TLS: {e}")))?,
        )),
        None => None,
    };
    check_data_dir(&config.data)?;
    let (log, recovery) = Log::open(LogConfig {
        dir: config.data.join("log"),
        segment_bytes: config.segment_bytes,
    })?;
    tracing::info!(
        records = recovery.records,
        segments = recovery.segments,
        truncated_bytes = recovery.truncated_bytes,
        "log recovered"
    );
    let store = Arc::new(Store::open(&config.data.join("store"))?);
    let engine = Engine::start(log.clone(), store, config.engine)?;
    let mut mesh = config.mesh.clone();
    if config.tls.is_some() {
        mesh.tls = crate::tls::ClientTls::of_node(config.tls.as_ref());
    }
    let links = crate::links::Links::start(
        log.clone(),
        engine.clone(),
        mesh,
        config.limits.max_event_bytes,
    );
    let service = Service::new(log.clone(), engine.clone(), config.strict, config.limits)
        .with_mesh(config.mesh.clone())
        .with_links(links.clone())
        .with_insecure(config.insecure && exposed && !(tls.is_some() && tokens.enabled()))
        .with_tls(
            tls.is_some(),
            tls.as_ref().is_some_and(|t| t.verifies_peers()),
        )
        .with_tokens(tokens.clone())
        .with_audit(config.data.clone());

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::data_mesh_server::DataMeshServer<Service>>()
        .await;
    // Reflection in both versions stock tools speak (grpcurl and Postman use v1,
    // many clients still only v1alpha), describing the health service too.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| NodeError::Server(e.to_string()))?;
    let reflection = reflection()
        .build_v1()
        .map_err(|e| NodeError::Server(e.to_string()))?;

    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let local = listener.local_addr()?;
    let unix_listener = match &config.socket {
        Some(path) => Some((bind_unix(path).await?, path.clone())),
        None => None,
    };
    tracing::info!(name = %config.mesh.name, peers = config.mesh.peers.len(), address = %local, data = %config.data.display(), engine = %config.engine, tls = tls.is_some(), auth = tokens.enabled(), startup_ms = started.elapsed().as_millis() as u64, "serving");
    match (tls.is_some(), tokens.enabled()) {
        (true, true) => {}
        _ if local.ip().is_loopback() => tracing::info!(
            tls = tls.is_some(),
            auth = tokens.enabled(),
            "serving loopback (and the Unix socket, if any) only, for the services on this host"
        ),
        (tls, auth) => {
            tracing::warn!(address = %local, tls, auth, "INSECURE: serving a network address without TLS and authentication (--insecure): anyone who can reach it may read or change what it lacks protection for")
        }
    }
    // A line tools and tests can wait for.
    eprintln!("datamesh listening on {local}");

    // The message limit covers the largest request and the largest response: a
    // document may be 3 MiB encoded, up to about six times that as JSON, whatever
    // the request limits are (requests are held to them by the service itself).
    let max_message = config.limits.max_bytes.max(20 << 20) + (4 << 20);
    // `Api` corrects the statuses tonic makes itself (undecodable or oversized requests)
    // and cuts any status too large for gRPC metadata.
    let closer = service.clone();
    let rates_service = service.clone();
    let rpc_metrics = crate::api::RpcMetrics::default();
    let mut server = crate::api::Api::new(service.clone(), max_message).with_tokens(tokens.clone());
    if config.metrics.is_some() {
        server = server.with_metrics(rpc_metrics.clone());
    }
    // The wire protocol, beside gRPC on the Unix socket and a plaintext TCP port.
    let wire = Arc::new(crate::wire::WireService::new(
        service.clone(),
        tokens.clone(),
        config.metrics.is_some().then(|| rpc_metrics.clone()),
        max_message,
    ));
    let metrics_listener = match config.metrics {
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address).await?;
            let local = listener.local_addr()?;
            let app = Arc::new(crate::metrics::http::App {
                metrics: Arc::new(crate::metrics::Metrics::new(service.clone(), &rpc_metrics)),
                tokens: tokens.clone(),
                service: service.clone(),
            });
            Some((listener, local, app))
        }
        None => None,
    };
    // On the TLS listener, a plaintext client is answered that it must use TLS (a
    // node without TLS skips the layer: it costs an allocation per call).
    let router = tonic::transport::Server::builder()
        .layer(tower::util::option_layer(
            tls.is_some().then_some(crate::tls::RequireTlsLayer),
        ))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(server);
    // The Unix socket serves the same router until the same shutdown.
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let unix = match unix_listener {
        Some((listener, path)) => {
            tracing::info!(socket = %path.display(), "serving on a Unix socket");
            eprintln!("datamesh listening on unix:{}", path.display());
            let incoming = crate::wire::incoming(
                tokio_stream::wrappers::UnixListenerStream::new(listener),
                wire.clone(),
                stop.subscribe(),
            );
            let until = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            let router = router.clone();
            Some(tokio::spawn(async move {
                router.serve_with_incoming_shutdown(incoming, until).await
            }))
        }
        None => None,
    };
    if let Some(tls) = &tls {
        tokio::spawn(tls.clone().watch(stop.subscribe()));
    }
    if let Some((listener, local, app)) = metrics_listener {
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(address = %local, "serving metrics at {scheme}://{local}/metrics and the admin page at {scheme}://{local}/");
        eprintln!("datamesh metrics on {scheme}://{local}/metrics");
        tokio::spawn(crate::metrics::http::serve(
            listener,
            tls.clone(),
            app,
            stop.subscribe(),
        ));
    }
    // The rates `status` reports, sampled once a second.
    let sampler = rates_service.clone();
    let mut sampling = stop.subscribe();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = sampling.wait_for(|s| *s) => return,
                _ = tick.tick() => sampler.sample_rates(),
            }
        }
    });
    let wire_stop = stop.subscribe();
    let until = async move {
        shutdown.await;
        // Streams that follow the log would keep their connections open forever.
        closer.close();
        let _ = stop.send(true);
    };
    let served = match tls {
        Some(tls) => {
            router
                .serve_with_incoming_shutdown(crate::tls::incoming(listener, tls), until)
                .await
        }
        None => {
            // Without TCP_NODELAY, Nagle's algorithm and delayed ACKs hold small HTTP/2
            // frames back for tens of milliseconds per request.
            let accepted = tokio_stream::StreamExt::map(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                |stream| {
                    stream.inspect(|s| {
                        let _ = s.set_nodelay(true);
                    })
                },
            );
            let incoming = crate::wire::incoming(accepted, wire.clone(), wire_stop);
            router.serve_with_incoming_shutdown(incoming, until).await
        }
    }
    .map_err(|e| NodeError::Server(e.to_string()));
    // Had the TCP server stopped on an error, dropping `stop` with its future stopped
    // the Unix socket's server too.
    let mut result = served;
    if let Some(task) = unix {
        let unix_served = match task.await {
            Ok(served) => served.map_err(|e| NodeError::Server(e.to_string())),
            Err(e) => Err(NodeError::Server(e.to_string())),
        };
        if let Some(path) = &config.socket {
            let _ = std::fs::remove_file(path);
        }
        result = result.and(unix_served);
    }
    // Calls in flight on the wire protocol are answered before the log closes.
    wire.drained(std::time::Duration::from_secs(10)).await;
    tracing::info!("shutting down: in-flight requests finished");
    // Each link ends after its batch in flight is committed (or refused).
    links.stop().await;
    // The batch being folded commits (checkpoints with their documents), then the
    // engine stops; the log closes after its queued appends.
    engine.stop().await;
    log.close();
    result
}

/// Binds a Unix socket at `path`, private to the node's user (mode 0600). A socket
/// file left there by a node that is gone (a crash leaves it behind) is replaced; one
/// a live process answers on is an error.
async fn bind_unix(path: &std::path::Path) -> Result<tokio::net::UnixListener, NodeError> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(NodeError::Server(format!(
                "{} exists and is not a socket: refusing to replace it",
                path.display()
            )));
        }
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(NodeError::Server(format!(
                "{} is in use by another process",
                path.display()
            )));
        }
        std::fs::remove_file(path)?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .map_err(|e| NodeError::Server(format!("cannot listen on unix:{}: {e}", path.display())))?;
    // Only the node's own user may connect (connecting needs write permission): the
    // socket has no authentication either.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
