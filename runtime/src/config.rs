//! The node's optional configuration file (TOML).
//!
//! A node needs no file: [`NodeConfig::default`] is a complete configuration. A file
//! (`datamesh serve --config FILE`, or `DATAMESH_CONFIG`) sets any subset of the keys
//! below, and command-line flags override it:
//!
//! ```toml
//! data = "/var/lib/datamesh"     # data directory
//! listen = "127.0.0.1:7070"      # gRPC address (another than loopback needs insecure)
//! insecure = false               # allow a non-loopback address without TLS and tokens
//! tls_cert = "/etc/datamesh/node.pem"  # serve TLS with this certificate chain (PEM)
//! tls_key = "/etc/datamesh/node.key"   # and its key; both reloaded on SIGHUP or change
//! tls_ca = "/etc/datamesh/ca.pem"      # the mesh's CA: verifies client certificates
//!                                      # (peer names) and https:// peers
//! log_format = "text"            # or "json": one object per line on stderr
//! metrics = "127.0.0.1:9090"     # Prometheus /metrics and the admin page (off by default)
//! socket = "/run/datamesh.sock"  # also serve on this Unix socket
//! strict = true                  # reject undeclared event types
//! engine = "jit"                 # or "interp"
//! segment_mib = 128              # log segment size
//! name = "payments"              # this node's name in the mesh
//!
//! [peers.bank]                   # a peer, by name
//! address = "http://127.0.0.1:7071"
//! token_file = "/etc/datamesh/bank.token"  # the token to present to it, if it needs one
//!
//! [limits]
//! max_events = 10000             # events per append
//! max_request_bytes = 16777216   # payload bytes per append
//! max_event_bytes = 1048576      # bytes of one payload
//! ```
//!
//! Invariant: an unknown key, a value of the wrong type or out of range is an error
//! naming the key (never ignored), so a typo cannot silently run a node with defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::engine::EngineKind;
use crate::node::NodeConfig;

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        message: String,
    },
    /// The file is not valid TOML or has a wrong key or value.
    #[error("configuration file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line and column.
        message: String,
    },
}

/// The keys of the file; every one is optional.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Data directory.
    pub data: Option<PathBuf>,
    /// gRPC listen address.
    pub listen: Option<String>,
    /// A Unix socket to serve on as well.
    pub socket: Option<PathBuf>,
    /// Serve a non-loopback address without TLS and authentication.
    pub insecure: Option<bool>,
    /// The TLS certificate chain.
    pub tls_cert: Option<PathBuf>,
    /// Its key.
    pub tls_key: Option<PathBuf>,
    /// The mesh's CA.
    pub tls_ca: Option<PathBuf>,
    /// `text` or `json`.
    pub log_format: Option<String>,
    /// The metrics and admin page address.
    pub metrics: Option<String>,
    /// Reject undeclared event types.
    pub strict: Option<bool>,
    /// `jit` or `interp`.
    pub engine: Option<String>,
    /// Log segment size in MiB.
    pub segment_mib: Option<u64>,
    /// Request limits.
    pub limits: Option<FileLimits>,
    /// The node's name in the mesh.
    pub name: Option<String>,
    /// Peers by name (`[peers.NAME]` tables).
    pub peers: Option<std::collections::BTreeMap<String, FilePeer>>,
}

/// A `[peers.NAME]` table.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePeer {
    /// `http://HOST:PORT`, `https://HOST:PORT` or `unix:PATH`.
    pub address: String,
    /// A file holding the token this node presents to the peer.
    pub token_file: Option<PathBuf>,
}

/// The `[limits]` table.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    /// Events per append.
    pub max_events: Option<usize>,
    /// Payload bytes per append.
    pub max_request_bytes: Option<usize>,
    /// Bytes of one payload.
    pub max_event_bytes: Option<usize>,
}

impl FileConfig {
    /// Reads and parses a file.
    ///
    /// # Errors
    /// [`ConfigError`]: unreadable file, invalid TOML, unknown key, wrong type.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        FileConfig::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses the text of a file.
    ///
    /// # Errors
    /// The parser's message (with line and column).
    pub fn parse(text: &str) -> Result<FileConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }

    /// The configuration `base` with this file's keys applied.
    ///
    /// # Errors
    /// A message naming the key whose value is not acceptable.
    pub fn apply(&self, mut base: NodeConfig) -> Result<NodeConfig, String> {
        if let Some(data) = &self.data {
            base.data = data.clone();
        }
        if let Some(listen) = &self.listen {
            base.listen = listen.parse::<SocketAddr>().map_err(|e| {
                format!("`listen = \"{listen}\"` is not an address like \"127.0.0.1:7070\": {e}")
            })?;
        }
        if let Some(socket) = &self.socket {
            base.socket = Some(socket.clone());
        }
        if let Some(insecure) = self.insecure {
            base.insecure = insecure;
        }
        if let Some(strict) = self.strict {
            base.strict = strict;
        }
        if let Some(metrics) = &self.metrics {
            base.metrics = Some(metrics.parse::<SocketAddr>().map_err(|e| {
                format!("`metrics = \"{metrics}\"` is not an address like \"127.0.0.1:9090\": {e}")
            })?);
        }
        if let Some(format) = &self.log_format {
            base.log_json = match format.as_str() {
                "text" => false,
                "json" => true,
                other => {
                    return Err(format!(
                        "`log_format = \"{other}\"`: the formats are \"text\" and \"json\""
                    ));
                }
            };
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                base.tls = Some(crate::tls::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    ca: self.tls_ca.clone(),
                });
            }
            (None, None) if self.tls_ca.is_some() => {
                return Err(
                    "`tls_ca` verifies client certificates on a TLS listener: set `tls_cert` and `tls_key` too".to_owned(),
                );
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err("`tls_cert` needs `tls_key` (its private key)".to_owned());
            }
            (None, Some(_)) => {
                return Err("`tls_key` needs `tls_cert` (its certificate)".to_owned());
            }
        }
        if let Some(engine) = &self.engine {
            base.engine = match engine.as_str() {
                "jit" => EngineKind::Jit,
                "interp" => EngineKind::Interp,
                other => {
                    return Err(format!(
                        "`engine = \"{other}\"`: the engines are \"jit\" and \"interp\""
                    ));
                }
            };
        }
        if let Some(mib) = self.segment_mib {
            base.segment_bytes = segment_bytes(mib)?;
        }
        if let Some(name) = &self.name {
            crate::mesh::check_name(name).map_err(|e| format!("`name`: {e}"))?;
            base.mesh.name = name.clone();
        }
        for (peer, table) in self.peers.iter().flatten() {
            crate::mesh::check_name(peer).map_err(|e| format!("`[peers.{peer}]`: {e}"))?;
            crate::mesh::check_address(&table.address)
                .map_err(|e| format!("`[peers.{peer}] address`: {e}"))?;
            base.mesh.peers.insert(peer.clone(), table.address.clone());
            if let Some(file) = &table.token_file {
                base.mesh.tokens.insert(peer.clone(), file.clone());
            }
        }
        if let Some(limits) = &self.limits {
            let positive = |key: &str, v: Option<usize>, current: usize| match v {
                Some(0) => Err(format!("`limits.{key}` must be at least 1")),
                Some(v) => Ok(v),
                None => Ok(current),
            };
            base.limits.max_events =
                positive("max_events", limits.max_events, base.limits.max_events)?;
            base.limits.max_bytes = positive(
                "max_request_bytes",
                limits.max_request_bytes,
                base.limits.max_bytes,
            )?;
            base.limits.max_event_bytes = positive(
                "max_event_bytes",
                limits.max_event_bytes,
                base.limits.max_event_bytes,
            )?;
        }
        Ok(base)
    }
}

/// A segment size in MiB, checked: from 1 MiB to 4 GiB.
///
/// # Errors
/// A message when out of range.
pub fn segment_bytes(mib: u64) -> Result<u64, String> {
    if (1..=4096).contains(&mib) {
        Ok(mib << 20)
    } else {
        Err(format!("`segment_mib = {mib}` is out of range (1 to 4096)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_keys_go_together() {
        let file =
            FileConfig::parse("tls_cert = \"n.pem\"\ntls_key = \"n.key\"\ntls_ca = \"ca.pem\"\n")
                .expect("parses");
        let config = file.apply(NodeConfig::default()).expect("applies");
        assert_eq!(
            config.tls,
            Some(crate::tls::TlsFiles {
                cert: "n.pem".into(),
                key: "n.key".into(),
                ca: Some("ca.pem".into()),
            })
        );
        for lonely in [
            "tls_cert = \"n.pem\"",
            "tls_key = \"n.key\"",
            "tls_ca = \"ca.pem\"",
        ] {
            let file = FileConfig::parse(lonely).expect("parses");
            let error = file.apply(NodeConfig::default()).expect_err(lonely);
            assert!(error.contains("tls_"), "{error}");
        }
    }

    #[test]
    fn the_name_and_peers_are_read_and_checked() {
        let file = FileConfig::parse(
            "name = \"payments\"\n[peers.bank]\naddress = \"http://127.0.0.1:7071\"\n[peers.reporting]\naddress = \"unix:/run/r.sock\"\n",
        )
        .expect("parses");
        let config = file.apply(NodeConfig::default()).expect("applies");
        assert_eq!(config.mesh.name, "payments");
        assert_eq!(
            config.mesh.peers.get("bank").map(String::as_str),
            Some("http://127.0.0.1:7071")
        );
        assert_eq!(config.mesh.peers.len(), 2);
        for (text, named) in [
            ("name = \"2fast\"\n", "`name`"),
            (
                "[peers.bank]\naddress = \"127.0.0.1:7071\"\n",
                "`[peers.bank] address`",
            ),
            (
                "[peers.\"a b\"]\naddress = \"http://x:1\"\n",
                "`[peers.a b]`",
            ),
        ] {
            let error = FileConfig::parse(text)
                .expect("parses")
                .apply(NodeConfig::default())
                .expect_err(text);
            assert!(error.contains(named), "{error}");
        }
        assert!(FileConfig::parse("[peers.bank]\naddres = \"http://x:1\"\n").is_err());
    }

    #[test]
    fn an_empty_file_keeps_every_default() {
        let config = FileConfig::parse("").and_then(|f| f.apply(NodeConfig::default()));
        let config = config.expect("valid");
        let default = NodeConfig::default();
        assert_eq!(config.data, default.data);
        assert_eq!(config.listen, default.listen);
        assert_eq!(config.socket, None);
        assert_eq!(config.segment_bytes, default.segment_bytes);
    }

    #[test]
    fn every_key_is_applied() {
        let text = r#"
            data = "/tmp/x"
            listen = "0.0.0.0:9000"
            socket = "/tmp/x.sock"
            strict = true
            engine = "interp"
            segment_mib = 8
            [limits]
            max_events = 5
            max_request_bytes = 1000
            max_event_bytes = 100
        "#;
        let config = FileConfig::parse(text)
            .and_then(|f| f.apply(NodeConfig::default()))
            .expect("valid");
        assert_eq!(config.data, PathBuf::from("/tmp/x"));
        assert_eq!(config.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(config.socket, Some(PathBuf::from("/tmp/x.sock")));
        assert!(config.strict);
        assert_eq!(config.engine, EngineKind::Interp);
        assert_eq!(config.segment_bytes, 8 << 20);
        assert_eq!(
            (
                config.limits.max_events,
                config.limits.max_bytes,
                config.limits.max_event_bytes
            ),
            (5, 1000, 100)
        );
    }

    #[test]
    fn mistakes_name_the_key() {
        let cases = [
            ("listne = \"a\"", "listne"),
            ("listen = \"localhost\"", "listen"),
            ("engine = \"fast\"", "engine"),
            ("strict = \"yes\"", "strict"),
            ("segment_mib = 0", "segment_mib"),
            ("[limits]\nmax_events = 0", "max_events"),
            ("[limits]\nmax_evnts = 1", "max_evnts"),
            ("data = ", "line 1"),
        ];
        for (text, key) in cases {
            let outcome = FileConfig::parse(text).and_then(|f| f.apply(NodeConfig::default()));
            let Err(message) = outcome else {
                panic!("`{text}` was accepted");
            };
            assert!(message.contains(key), "`{text}`: {message}");
        }
    }
}
