//! Connections to a node, for the node's links to its peers and for the CLI: a gRPC
//! channel for a URL (TCP, TLS or a Unix socket, with keepalive pings) and the
//! interceptor that sends a bearer token.

use tonic::transport::Channel;

/// Adds `authorization: Bearer <token>` to every request, when there is a token.
#[derive(Debug, Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl Bearer {
    /// No header: for a node that requires no token.
    pub fn none() -> Bearer {
        Bearer(None)
    }

    /// The header for `token`.
    ///
    /// # Errors
    /// A token that cannot be a header value.
    pub fn new(token: &str) -> Result<Bearer, String> {
        format!("Bearer {}", token.trim())
            .parse()
            .map(|value| Bearer(Some(value)))
            .map_err(|_| {
                "the token is not printable ASCII: is it the file the node printed?".to_owned()
            })
    }
}

impl Bearer {
    /// Adds the header to `request`.
    pub fn apply<T>(&self, request: &mut tonic::Request<T>) {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        self.apply(&mut request);
        Ok(request)
    }
}

/// A gRPC channel to a node at `url` (`http://HOST:PORT`, `https://...` or
/// `unix:PATH`), with HTTP/2 keepalive pings so that a peer that vanished without
/// closing the connection is noticed within seconds. `tls` says what an `https://`
/// node is verified against and which certificate to present. Used by the CLI and
/// by the node's own links to its peers.
///
/// # Errors
/// The address is not a URL, a TLS file does not load, or nothing answers there
/// (with the cause, a failed TLS handshake included).
pub async fn channel(url: &str, tls: &crate::tls::ClientTls) -> Result<Channel, String> {
    let unreachable = |e: &dyn std::error::Error| {
        // tonic's own message is "transport error": the cause is further down.
        let mut message = format!("cannot reach a node at {url}: {e}");
        let mut source = e.source();
        while let Some(cause) = source {
            let text = format!(": {cause}");
            if !message.contains(&text) {
                message.push_str(&text);
            }
            source = cause.source();
        }
        message
    };
    let keepalive = |endpoint: tonic::transport::Endpoint| {
        endpoint
            .http2_keep_alive_interval(std::time::Duration::from_secs(5))
            .keep_alive_timeout(std::time::Duration::from_secs(5))
            .keep_alive_while_idle(true)
            .connect_timeout(std::time::Duration::from_secs(5))
    };
    if let Some(path) = url.strip_prefix("unix:") {
        // The URI is not used to connect: the connector opens the socket.
        let path = std::path::PathBuf::from(path);
        keepalive(tonic::transport::Endpoint::from_static("http://localhost"))
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            }))
            .await
            .map_err(|e| unreachable(&e))
    } else {
        let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
            .map_err(|e| format!("invalid node URL `{url}`: {e}"))?;
        if url.starts_with("https://") {
            let config = tls.config().map_err(|e| format!("TLS for {url}: {e}"))?;
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| format!("TLS for {url}: {e}"))?;
        }
        keepalive(endpoint)
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| unreachable(&e))
    }
}
