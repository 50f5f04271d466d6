//! The `datamesh` command line: run a node (`serve`) or talk to one (`deploy`,
//! `append`, `get`, `scan`, `tail`, `status`, `promote`, `retire`, `bench`). The binary is a one-line
//! wrapper around [`main`], so tests can run the very same code as a process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::client::{self, CliError};
use clap::{FromArgMatches, Parser, Subcommand, ValueEnum};
use datamesh_runtime::api::pb;
use datamesh_runtime::config::{FileConfig, segment_bytes};
use datamesh_runtime::engine::EngineKind;
use datamesh_runtime::node::{NodeConfig, serve, shutdown_signal};

/// The DataMesh node and its client.
#[derive(Debug, Parser)]
#[command(
    name = "datamesh",
    version,
    about = "An event datastore: a durable log and projections folded from it"
)]
struct Cli {
    /// The node to talk to (client commands): `http://HOST:PORT`, or `unix:PATH` for a
    /// node serving a Unix socket (`serve --socket PATH`); `https://` for TLS;
    /// `dmw://HOST:PORT` or `dmw+unix:PATH` for the wire protocol (lower latency, no
    /// TLS).
    #[arg(
        long,
        global = true,
        env = "DATAMESH_NODE",
        default_value = "http://127.0.0.1:7070"
    )]
    node: String,
    /// A file holding the token to send (client commands, when the node requires
    /// one); `DATAMESH_TOKEN` holds the token itself.
    #[arg(long, global = true, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// The CA certificate (PEM) to verify an `https://` node against (client
    /// commands); without it, the system's trusted roots.
    #[arg(long, global = true, env = "DATAMESH_CA", value_name = "FILE")]
    ca: Option<PathBuf>,
    /// A client certificate (PEM) to present to an `https://` node, with
    /// `--client-key`.
    #[arg(long, global = true, env = "DATAMESH_CLIENT_CERT", value_name = "FILE")]
    client_cert: Option<PathBuf>,
    /// The key (PEM) of `--client-cert`.
    #[arg(long, global = true, env = "DATAMESH_CLIENT_KEY", value_name = "FILE")]
    client_key: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node. Settings come from the defaults, then the configuration file (if
    /// any), then these flags.
    Serve {
        /// A TOML configuration file (optional; see the book, "Running a node").
        #[arg(long, env = "DATAMESH_CONFIG")]
        config: Option<PathBuf>,
        /// Data directory [default: datamesh-data].
        #[arg(long)]
        data: Option<PathBuf>,
        /// gRPC listen address [default: 127.0.0.1:7070].
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Also serve on this Unix socket (clients: `--node unix:PATH`).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Listen on an address other than loopback without TLS and authentication
        /// (a token): anyone who can reach it may read or change what that leaves
        /// open. Only on a network you trust.
        #[arg(long)]
        insecure: bool,
        /// Serve TLS on the TCP listener with this certificate chain (PEM); the
        /// node's links present it to `https://` peers too. Reloaded on SIGHUP and
        /// when the file changes.
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The private key (PEM) of `--tls-cert`.
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// The CA (PEM) of the mesh: clients may present certificates it signed (a
        /// certificate naming `datamesh://NAME` proves the node NAME, which is then
        /// served only what is exported to NAME), and `https://` peers are verified
        /// against it.
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_ca: Option<PathBuf>,
        /// How the node logs on stderr: `text` (coloured on a terminal only; also
        /// `NO_COLOR`) or `json` (one object per line, for log shippers)
        /// [default: text].
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
        /// Serve Prometheus metrics at http://ADDR/metrics and the admin page at
        /// http://ADDR/ (https with --tls-cert; a token with the reader role when the
        /// node has tokens) [default: off].
        #[arg(long, value_name = "ADDR")]
        metrics: Option<SocketAddr>,
        /// Reject events of types no deployed program declares.
        #[arg(long)]
        strict: bool,
        /// Log segment size in MiB [default: 128].
        #[arg(long)]
        segment_mib: Option<u64>,
        /// The engine projection handlers run on: native code from the JIT, or the
        /// reference interpreter (a program the JIT cannot compile always runs on the
        /// interpreter) [default: jit].
        #[arg(long, value_enum)]
        engine: Option<EngineArg>,
        /// This node's name in the mesh [default: datamesh].
        #[arg(long)]
        name: Option<String>,
        /// A peer, as NAME=ADDRESS (`http://HOST:PORT` or `unix:PATH`); repeatable.
        #[arg(long = "peer", value_name = "NAME=ADDRESS")]
        peers: Vec<String>,
        /// The token this node presents to a peer it imports from, as NAME=FILE (a
        /// `peer:THIS_NODE` token of that peer); repeatable.
        #[arg(long = "peer-token", value_name = "NAME=FILE")]
        peer_tokens: Vec<String>,
    },
    /// Manage the tokens of a node: through the node (with an admin token), or with
    /// `--data DIR` on its data directory, running or not (the first admin token needs
    /// no network). With tokens, every call needs one.
    Token {
        #[command(subcommand)]
        action: TokenCommand,
    },
    /// Check a stopped node's log, frame by frame, and report where it stops verifying
    /// and what a repair keeps and drops; with `--apply`, cut the log there (what is
    /// removed is saved first, the intact events as a file for `append --file`).
    Repair {
        /// Data directory of the stopped node [default: datamesh-data].
        #[arg(long)]
        data: Option<PathBuf>,
        /// Cut the log at the damage (without it, nothing is written).
        #[arg(long)]
        apply: bool,
    },
    /// Copy a node's data directory, running or not, into a new directory that a node
    /// can be started on: the log (consistent: whole groups only, every frame
    /// verified), the catalog of deploys, the tokens and the audit trail. The
    /// projections rebuild from the log when a node starts on the copy.
    Backup {
        /// Data directory of the node [default: datamesh-data].
        #[arg(long)]
        data: Option<PathBuf>,
        /// Where the backup goes: a new or empty directory.
        out: PathBuf,
    },
    /// Compile a `.dmp` program on the node and start its projections.
    Deploy {
        /// The program.
        file: PathBuf,
        /// Then wait until every projection version of the program (started or already
        /// running) has applied every event the log held at the deploy, for about SECONDS
        /// at most (3600 if not given); exit 1 if one faults or the time runs out.
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "3600")]
        wait: Option<u64>,
    },
    /// Append one event (`append TYPE JSON`) or a file of events (`append --file F`).
    Append {
        /// Event type.
        #[arg(required_unless_present = "file")]
        r#type: Option<String>,
        /// Payload as a JSON object.
        #[arg(required_unless_present = "file")]
        data: Option<String>,
        /// Stream.
        #[arg(long)]
        stream: Option<String>,
        /// Expected last version of the stream (-1: the stream must not exist yet).
        #[arg(long, allow_hyphen_values = true)]
        expect_version: Option<i64>,
        /// Client event id (appends are idempotent by it).
        #[arg(long)]
        id: Option<String>,
        /// Events, one JSON object per line (type, data, stream, id). A line with
        /// `time` is refused: the node stamps each event when it appends it.
        #[arg(long, conflicts_with_all = ["type", "data"])]
        file: Option<PathBuf>,
        /// With --file: append lines that have a `time` (`dmc run` fixtures) without it.
        #[arg(long, requires = "file")]
        drop_time: bool,
        /// Read a document back once its projection has applied the event, in the same
        /// call: `PROJECTION:KEY` (`PROJECTION:` for a projection without a key);
        /// repeatable.
        #[arg(long, value_name = "PROJECTION:KEY", conflicts_with = "file")]
        read_back: Vec<String>,
    },
    /// Print one document as JSON; exit 1 when there is none.
    Get {
        /// Projection name.
        projection: String,
        /// Key (composite keys as a JSON array); omit for single-document projections.
        #[arg(default_value = "")]
        key: String,
        /// A specific version instead of the active one.
        #[arg(long, default_value_t = 0)]
        version: u32,
        /// Wait until the projection has applied every event before this position.
        #[arg(long, default_value_t = 0)]
        min_position: u64,
    },
    /// Print documents in key order, one JSON line each.
    Scan {
        /// Projection name.
        projection: String,
        /// Leading key parts (JSON array) or the first part's text.
        #[arg(long, default_value = "")]
        prefix: String,
        /// At most this many documents; when there are more, how to continue is
        /// printed on stderr.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// A specific version instead of the active one.
        #[arg(long, default_value_t = 0)]
        version: u32,
        /// Start after this key (the last one a previous page printed).
        #[arg(long, value_name = "KEY")]
        after: Option<String>,
    },
    /// Print events as JSON lines from a position; exit at the head unless --follow.
    Tail {
        /// First position (with --stream: first stream version).
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Keep printing new events as they are appended.
        #[arg(long)]
        follow: bool,
        /// Only this stream's events.
        #[arg(long)]
        stream: Option<String>,
    },
    /// List the deployed projection versions: which one reads go to, position, state.
    Projections {
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// The node at a glance: log head and append rate, each projection version's
    /// position, lag, fold rate, state and fault, each mesh link, as tables.
    Status {
        /// Print JSON instead (for scripts).
        #[arg(long)]
        json: bool,
        /// Redraw every second, with progress bars and ETAs for versions catching
        /// up (with --json: one object per line), until interrupted.
        #[arg(long)]
        watch: bool,
    },
    /// Make one version of a projection the one reads go to (it must have caught up).
    Promote {
        /// Projection name.
        name: String,
        /// Version number (2 for `balances v2`).
        version: u32,
    },
    /// Stop one version of a projection for good and delete its documents.
    Retire {
        /// Projection name.
        name: String,
        /// Version number.
        version: u32,
    },
    /// Certificates for development: `cert dev --out DIR NAME...` makes a local
    /// CA and a certificate and key per node (for mutual TLS in a mesh on one
    /// machine, with no openssl command).
    Cert {
        #[command(subcommand)]
        action: CertCommand,
    },
    /// Print the node's audit trail (who deployed, promoted, retired, reset a link,
    /// made or revoked a token, and when), one JSON object per line.
    Audit {
        /// Read the trail of this data directory directly (without it: through the
        /// node, with an admin token).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Only the newest N entries (through the node: at most 10000) [default: all
        /// with --data, 100 through the node].
        #[arg(long)]
        last: Option<u32>,
    },
    /// Operate the node's links to its peers (the mesh).
    Link {
        #[command(subcommand)]
        action: LinkCommand,
    },
    /// Drive a running node with a benchmark workload.
    Bench(crate::bench::BenchArgs),
}

/// `datamesh token ...`
#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token and print it (the only time it is shown; the node keeps a hash).
    /// Through the node (an admin token), or with `--data` on its data directory.
    Create {
        /// admin, writer, reader, or peer:NAME (what the node NAME may import).
        #[arg(long)]
        role: String,
        /// Who or what holds it.
        #[arg(long, default_value = "")]
        name: String,
        /// Limit a writer to these event types, or a reader to these projections
        /// (comma-separated; a reader so limited cannot read the log's events).
        #[arg(long, value_delimiter = ',')]
        scope: Vec<String>,
        /// Work on this data directory directly (without it: through the node).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// List the tokens (ids, names, roles; never secrets).
    List {
        /// Work on this data directory directly (without it: through the node).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Revoke a token by id: calls with it are refused from then on.
    Revoke {
        /// The token's id.
        id: String,
        /// Work on this data directory directly (without it: through the node).
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

/// How `serve` logs.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Logs to stderr: by default the node's own events at `info`, its libraries' only
/// from `warn` (the JIT backend logs every function's IR at `info`, the storage engine
/// every flush); `RUST_LOG` replaces that. Text has ANSI colour only on a terminal
/// without `NO_COLOR`; JSON is one object per line.
fn init_logging(json: bool) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        "warn,datamesh=info,datamesh_cli=info,datamesh_runtime=info,datamesh_compiler=info".into()
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        let colour = std::io::stderr().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        builder.with_ansi(colour).init();
    }
}

/// `datamesh cert ...`
#[derive(Debug, Subcommand)]
enum CertCommand {
    /// Make a development CA in DIR (`ca.pem`, `ca.key`; reused when it exists) and,
    /// per node name, `NAME.pem` and `NAME.key`: valid for both ends of a connection,
    /// naming the node as `datamesh://NAME`, for `localhost`, `127.0.0.1`, `::1` and
    /// each `--host`. Prints the files as JSON.
    Dev {
        /// The directory to write to (created, mode 0700).
        #[arg(long)]
        out: PathBuf,
        /// The node names (one certificate each).
        #[arg(value_name = "NAME", required = true)]
        nodes: Vec<String>,
        /// Another host name or IP address the certificates are valid for; repeatable.
        #[arg(long = "host", value_name = "HOST")]
        hosts: Vec<String>,
    },
}

/// `datamesh link ...`
#[derive(Debug, Subcommand)]
enum LinkCommand {
    /// Move a stopped link to a peer position and accept the peer's log as it is now
    /// (after the peer's data was replaced, or its log is behind the link). The reset
    /// is kept in this node's log.
    Reset {
        /// The peer.
        peer: String,
        /// The peer position to import from (0: all of the peer's log).
        #[arg(long = "from")]
        from: u64,
        /// Who resets and why, kept with the reset.
        #[arg(long, default_value = "")]
        note: String,
    },
}

/// `--engine` values (kept apart from [`EngineKind`] so the engine does not depend on
/// the command-line parser).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EngineArg {
    /// The Cranelift JIT.
    Jit,
    /// The reference interpreter.
    Interp,
}

impl From<EngineArg> for EngineKind {
    fn from(arg: EngineArg) -> EngineKind {
        match arg {
            EngineArg::Jit => EngineKind::Jit,
            EngineArg::Interp => EngineKind::Interp,
        }
    }
}

/// `datamesh repair`: reports on the log of a stopped node (and with `apply`, cuts it
/// at the first damage). Exit code 0 when the log verifies or was repaired, 2 when a
/// dry run found damage, 1 on errors.
impl TokenCommand {
    /// The data directory to work on offline, if one was given.
    fn data(&self) -> Option<&PathBuf> {
        match self {
            TokenCommand::Create { data, .. }
            | TokenCommand::List { data }
            | TokenCommand::Revoke { data, .. } => data.as_ref(),
        }
    }
}

/// A token as `datamesh token` prints it.
fn token_line(t: &pb::TokenInfo) -> serde_json::Value {
    serde_json::json!({
        "id": t.id,
        "name": t.name,
        "role": t.role,
        "created": t.created,
        "revoked": if t.revoked.is_empty() { serde_json::Value::Null } else { t.revoked.clone().into() },
        "scope": t.scope,
    })
}

/// `datamesh token ...` without `--data`: through the node (an admin token).
async fn token_online(node: &mut client::Client, action: TokenCommand) -> Result<(), CliError> {
    match action {
        TokenCommand::Create {
            role, name, scope, ..
        } => {
            let r = node
                .token_create(pb::TokenCreateRequest { role, name, scope })
                .await?
                .into_inner();
            let mut out = r.token.as_ref().map(token_line).unwrap_or_default();
            if let Some(map) = out.as_object_mut() {
                map.insert("token".into(), r.secret.into());
            }
            println!("{out}");
        }
        TokenCommand::List { .. } => {
            let r = node.token_list(pb::TokenListRequest {}).await?.into_inner();
            for t in &r.tokens {
                println!("{}", token_line(t));
            }
        }
        TokenCommand::Revoke { id, .. } => {
            let r = node
                .token_revoke(pb::TokenRevokeRequest { id })
                .await?
                .into_inner();
            println!("{}", r.token.as_ref().map(token_line).unwrap_or_default());
        }
    }
    Ok(())
}

/// `datamesh token ... --data DIR`: works on the data directory's token file (the node
/// may be stopped or running).
fn token(action: &TokenCommand, data: &std::path::Path) -> Result<(), CliError> {
    let dir = |_: &Option<PathBuf>| data.to_path_buf();
    let failed = |e: datamesh_runtime::auth::AuthError| CliError {
        message: e.to_string(),
        code: 1,
    };
    let shown = |t: &datamesh_runtime::auth::TokenRecord| {
        serde_json::json!({
            "id": t.id,
            "name": t.name,
            "role": t.role,
            "created": datamesh_stdlib::time::format_rfc3339(t.created),
            "revoked": t.revoked.map(datamesh_stdlib::time::format_rfc3339),
            "scope": t.scope,
        })
    };
    match action {
        TokenCommand::Create {
            role,
            name,
            scope,
            data,
        } => {
            let data = dir(data);
            datamesh_runtime::node::check_data_dir(&data)
                .map_err(|e| CliError::usage(e.to_string()))?;
            let (record, token) =
                datamesh_runtime::auth::create(&data, role, name, scope).map_err(failed)?;
            audit_token(&data, "token create", &record);
            let mut out = shown(&record);
            if let Some(map) = out.as_object_mut() {
                map.insert("token".into(), token.into());
            }
            println!("{out}");
        }
        TokenCommand::List { data } => {
            for record in datamesh_runtime::auth::list(&dir(data)).map_err(failed)? {
                println!("{}", shown(&record));
            }
        }
        TokenCommand::Revoke { id, data } => {
            let data = dir(data);
            let record = datamesh_runtime::auth::revoke(&data, id).map_err(failed)?;
            audit_token(&data, "token revoke", &record);
            println!("{}", shown(&record));
        }
    }
    Ok(())
}

/// Records a token change in the audit trail (by whoever ran `datamesh token` on the
/// data directory).
fn audit_token(data: &std::path::Path, action: &str, record: &datamesh_runtime::auth::TokenRecord) {
    let by = serde_json::json!({ "local": "datamesh token" });
    let details = serde_json::json!({ "id": record.id, "name": record.name, "role": record.role });
    if let Err(e) = datamesh_runtime::audit::record(data, action, by, details) {
        eprintln!("warning: the token changed, but the audit trail could not record it: {e}");
    }
}

fn repair(data: Option<PathBuf>, apply: bool) -> Result<(), CliError> {
    let data = data.unwrap_or_else(|| NodeConfig::default().data);
    let dir = data.join("log");
    let report = if apply {
        datamesh_runtime::log::repair::apply(&dir)
    } else {
        datamesh_runtime::log::repair::inspect(&dir)
    }
    .map_err(|e| CliError {
        message: format!("repair {}: {e}", dir.display()),
        code: 1,
    })?;
    print!("{report}");
    if report.damage.is_some() && !apply {
        return Err(CliError {
            message: "the log is damaged; nothing was changed (see above)".to_owned(),
            code: 2,
        });
    }
    Ok(())
}

fn backup(data: Option<PathBuf>, out: &std::path::Path) -> Result<(), CliError> {
    use datamesh_runtime::backup::BackupError;
    let data = data.unwrap_or_else(|| NodeConfig::default().data);
    let report = datamesh_runtime::backup::backup(&data, out).map_err(|e| match e {
        BackupError::NotADataDirectory(_) | BackupError::TargetNotEmpty(_) => {
            CliError::usage(format!("backup: {e}"))
        }
        _ => CliError {
            message: format!("backup of {}: {e}; nothing was kept", data.display()),
            code: 1,
        },
    })?;
    println!(
        "{}",
        serde_json::json!({
            "out": report.out.display().to_string(),
            "head": report.head,
            "segments": report.segments,
            "bytes": report.bytes,
            "torn_bytes": report.torn_bytes,
            "files": report.files,
        })
    );
    Ok(())
}

/// Whether `args` (without the program name) is a command line `datamesh` accepts:
/// `Err` with clap's message when not. For tests that check documented commands.
///
/// # Errors
/// What clap says is wrong.
pub fn check_args(args: &[String]) -> Result<(), String> {
    let matches = command()
        .try_get_matches_from(std::iter::once("datamesh".to_owned()).chain(args.iter().cloned()))
        .map_err(|e| e.to_string())?;
    Cli::from_arg_matches(&matches)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The command line's definition. The client options (`--node`, `--token-file`,
/// `--ca`, `--client-cert`, `--client-key`) are global, so they can follow any client
/// command; the commands that talk to no node (`serve`, `repair`, `cert`) get hidden
/// stand-ins with the same ids instead, which clap does not replace with the global
/// ones, so their `--help` does not list options they ignore.
fn command() -> clap::Command {
    use clap::CommandFactory;
    let client_options = [
        ("node", "node"),
        ("token_file", "token-file"),
        ("ca", "ca"),
        ("client_cert", "client-cert"),
        ("client_key", "client-key"),
    ];
    let mut command = Cli::command();
    for local in ["serve", "repair", "backup", "cert"] {
        command = command.mut_subcommand(local, |mut sub| {
            for (id, long) in client_options {
                sub = sub.arg(clap::Arg::new(id).long(long).num_args(1).hide(true));
            }
            sub
        });
    }
    command
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    if let Command::Serve {
        config,
        data,
        listen,
        socket,
        insecure,
        strict,
        segment_mib,
        engine,
        name,
        peers,
        peer_tokens,
        tls_cert,
        tls_key,
        tls_ca,
        log_format,
        metrics,
    } = cli.command
    {
        let mut node = NodeConfig::default();
        if let Some(path) = &config {
            let file = FileConfig::load(path).map_err(|e| CliError::usage(e.to_string()))?;
            node = file.apply(node).map_err(|e| {
                CliError::usage(format!("configuration file {}: {e}", path.display()))
            })?;
        }
        if let Some(data) = data {
            node.data = data;
        }
        if let Some(listen) = listen {
            node.listen = listen;
        }
        if socket.is_some() {
            node.socket = socket;
        }
        node.strict |= strict;
        node.insecure |= insecure;
        if metrics.is_some() {
            node.metrics = metrics;
        }
        if let (Some(cert), Some(key)) = (tls_cert, tls_key) {
            node.tls = Some(datamesh_runtime::tls::TlsFiles {
                cert,
                key,
                ca: tls_ca.or_else(|| node.tls.as_ref().and_then(|t| t.ca.clone())),
            });
        }
        if let Some(mib) = segment_mib {
            node.segment_bytes = segment_bytes(mib).map_err(CliError::usage)?;
        }
        if let Some(engine) = engine {
            node.engine = engine.into();
        }
        if let Some(name) = name {
            datamesh_runtime::mesh::check_name(&name)
                .map_err(|e| CliError::usage(format!("--name: {e}")))?;
            node.mesh.name = name;
        }
        for peer in peers {
            let (name, address) = datamesh_runtime::mesh::parse_peer(&peer)
                .map_err(|e| CliError::usage(format!("--peer: {e}")))?;
            node.mesh.peers.insert(name, address);
        }
        for pair in peer_tokens {
            let (name, file) = pair.split_once('=').ok_or_else(|| {
                CliError::usage(format!("--peer-token: `{pair}` is not NAME=FILE"))
            })?;
            datamesh_runtime::mesh::check_name(name)
                .map_err(|e| CliError::usage(format!("--peer-token: {e}")))?;
            node.mesh
                .tokens
                .insert(name.to_owned(), PathBuf::from(file));
        }
        if let Some(format) = log_format {
            node.log_json = matches!(format, LogFormat::Json);
        }
        init_logging(node.log_json);
        return serve(node, shutdown_signal()).await.map_err(|e| CliError {
            message: e.to_string(),
            code: 1,
        });
    }
    if let Command::Repair { data, apply } = &cli.command {
        return repair(data.clone(), *apply);
    }
    if let Command::Backup { data, out } = &cli.command {
        return backup(data.clone(), out);
    }
    if let Command::Token { action } = &cli.command
        && let Some(data) = action.data()
    {
        return token(action, data);
    }
    if let Command::Cert {
        action: CertCommand::Dev { out, nodes, hosts },
    } = &cli.command
    {
        let made = datamesh_runtime::tls::dev::make(out, nodes, hosts)
            .map_err(|e| CliError::usage(format!("cert dev: {e}")))?;
        let nodes: serde_json::Map<String, serde_json::Value> = made
            .nodes
            .iter()
            .map(|(name, cert, key)| {
                (
                    name.clone(),
                    serde_json::json!({ "cert": cert.display().to_string(), "key": key.display().to_string() }),
                )
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "ca": made.ca.display().to_string(), "new_ca": made.new_ca, "nodes": nodes })
        );
        return Ok(());
    }
    if let Command::Audit {
        data: Some(data),
        last,
    } = &cli.command
    {
        let entries = datamesh_runtime::audit::read(data).map_err(|e| CliError {
            message: format!(
                "{}: {e}",
                datamesh_runtime::audit::audit_file(data).display()
            ),
            code: 1,
        })?;
        let skip = last.map_or(0, |n| entries.len().saturating_sub(n as usize));
        for entry in &entries[skip..] {
            println!("{entry}");
        }
        return Ok(());
    }
    let token = match (&cli.token_file, std::env::var("DATAMESH_TOKEN")) {
        (Some(file), _) => Some(
            std::fs::read_to_string(file)
                .map_err(|e| CliError::usage(format!("--token-file {}: {e}", file.display())))?,
        ),
        (None, Ok(token)) if !token.is_empty() => Some(token),
        _ => None,
    };
    if let Some(token) = token {
        client::use_token(token.trim().to_owned());
    }
    client::use_tls(datamesh_runtime::tls::ClientTls {
        ca: cli.ca.clone(),
        cert: cli.client_cert.clone(),
        key: cli.client_key.clone(),
    });
    if let Command::Bench(args) = cli.command {
        return crate::bench::run(&cli.node, args).await;
    }
    let mut node = client::connect(&cli.node).await?;
    match cli.command {
        Command::Deploy { file, wait } => client::deploy(&mut node, &file, wait).await,
        Command::Append {
            r#type,
            data,
            stream,
            expect_version,
            id,
            file,
            drop_time,
            read_back,
        } => match file {
            Some(file) => client::append_file(&mut node, &file, drop_time).await,
            None if drop_time => Err(CliError::usage("--drop-time goes with --file")),
            None => {
                let event = pb::Event {
                    r#type: r#type.unwrap_or_default(),
                    data: data.unwrap_or_default(),
                    stream: stream.unwrap_or_default(),
                    id: id.unwrap_or_default(),
                };
                client::append_one(&mut node, event, expect_version, &read_back).await
            }
        },
        Command::Get {
            projection,
            key,
            version,
            min_position,
        } => client::get(&mut node, projection, key, version, min_position).await,
        Command::Scan {
            projection,
            prefix,
            limit,
            version,
            after,
        } => client::scan(&mut node, projection, prefix, limit, version, after).await,
        Command::Tail {
            from,
            follow,
            stream,
        } => client::tail(&mut node, from, follow, stream).await,
        Command::Projections { json } => client::projections(&mut node, json).await,
        Command::Status { json, watch } => client::status(&mut node, json, watch).await,
        Command::Promote { name, version } => client::promote(&mut node, name, version).await,
        Command::Retire { name, version } => client::retire(&mut node, name, version).await,
        Command::Link {
            action: LinkCommand::Reset { peer, from, note },
        } => client::link_reset(&mut node, peer, from, note).await,
        Command::Serve { .. }
        | Command::Bench(_)
        | Command::Repair { .. }
        | Command::Backup { .. }
        | Command::Cert { .. } => Ok(()),
        Command::Audit { last, .. } => {
            let r = node
                .audit(pb::AuditRequest {
                    last: last.unwrap_or(0),
                })
                .await?
                .into_inner();
            if r.omitted > 0 {
                eprintln!("({} older entries left out: --last N for more)", r.omitted);
            }
            for entry in &r.entries {
                println!("{entry}");
            }
            Ok(())
        }
        Command::Token { action } => token_online(&mut node, action).await,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        // clap checks a subcommand's arguments only when that subcommand is parsed:
        // this checks them all (a global flag clashing with a subcommand's argument,
        // say, which would otherwise panic in the hands of a user).
        super::command().debug_assert();
    }

    #[test]
    fn serve_help_lists_no_client_options() {
        let help = |name: &str| {
            let mut command = super::command();
            command.build();
            command
                .find_subcommand_mut(name)
                .map(|c| c.render_long_help().to_string())
                .unwrap_or_default()
        };
        let serve = help("serve");
        for client in [
            "--token-file",
            "--client-cert",
            "--client-key",
            "--ca <",
            "--node <",
        ] {
            assert!(!serve.contains(client), "serve --help lists {client}");
        }
        assert!(serve.contains("--tls-cert"));
        let status = help("status");
        assert!(
            status.contains("--node <") && status.contains("--token-file"),
            "{status}"
        );
    }

    #[test]
    fn every_command_parses_with_the_global_flags() {
        // A global flag whose id is also a subcommand's argument (`--key` and `get`'s
        // KEY) passes `debug_assert` and panics when the command is parsed: parse one
        // line of each.
        let global = [
            "--node",
            "https://127.0.0.1:7070",
            "--ca",
            "ca.pem",
            "--client-cert",
            "c.pem",
            "--client-key",
            "c.key",
            "--token-file",
            "t",
        ];
        for line in [
            "serve --data d --listen 127.0.0.1:0 --tls-cert a --tls-key b --tls-ca c --name n --peer p=http://h:1 --peer-token p=f --insecure --strict --segment-mib 8 --engine interp --socket s --log-format json --metrics 127.0.0.1:0",
            "token create --role admin --name n --scope a,b --data d",
            "token list",
            "token revoke id",
            "repair --data d --apply",
            "deploy p.dmp",
            "deploy p.dmp --wait",
            "deploy p.dmp --wait 60",
            "backup --data d out",
            "append T {} --stream s --expect-version -1 --id i",
            "append --file f --drop-time",
            "get balances a1 --version 2 --min-position 3",
            "scan balances --prefix a --limit 3 --version 1",
            "tail --from 3 --follow --stream s",
            "projections --json",
            "status --json --watch",
            "promote balances 2",
            "retire balances 1",
            "cert dev --out d a b --host h",
            "audit --last 3",
            "audit --data d",
            "link reset bank --from 3 --note n",
            "bench",
        ] {
            let args: Vec<String> = global
                .iter()
                .copied()
                .chain(line.split(' '))
                .map(str::to_owned)
                .collect();
            let parsed = super::check_args(&args);
            assert!(parsed.is_ok(), "{line}: {:?}", parsed.err());
        }
    }
}
