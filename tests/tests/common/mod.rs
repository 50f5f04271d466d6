//! What the end-to-end tests share: real `datamesh` processes on loopback ports, their
//! data directories, the CLI and a gRPC client, and meshes of such nodes on Unix
//! sockets (`Member`, `start_mesh`: several nodes importing from each other, started in
//! one call). Each test binary uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datamesh_runtime::api::pb;
use datamesh_runtime::api::pb::data_mesh_client::DataMeshClient;
use tonic::transport::Channel;

pub const BIN: &str = env!("CARGO_BIN_EXE_datamesh-under-test");

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fresh directory per test and engine (both engines' variants run concurrently),
/// removed when the returned guard is dropped.
/// Private to its owner, as a node requires of a data directory with data in it.
pub fn temp_dir(name: &str, engine: Engine) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix(&format!("datamesh-e2e-{name}-{}-", engine.name()))
        .tempdir()
        .expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
        .expect("chmod 700");
    dir
}

/// The engine a node runs handlers on. Every test runs once per engine (see
/// `on_both_engines!` at the end), so both give the same results end to end.
#[derive(Debug, Clone, Copy)]
pub enum Engine {
    Jit,
    #[allow(dead_code)]
    Interp,
}

impl Engine {
    /// The `--engine` value.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Jit => "jit",
            Engine::Interp => "interp",
        }
    }
}

/// A node process.
pub struct Node {
    pub child: Child,
    pub url: String,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Node {
    pub fn start(data: &Path, engine: Engine, extra: &[&str]) -> Node {
        Node::start_logging(data, engine, extra, Some("warn"))
    }

    /// A node whose `RUST_LOG` is `log` (`None`: unset, the node's default).
    pub fn start_logging(data: &Path, engine: Engine, extra: &[&str], log: Option<&str>) -> Node {
        Node::try_start(data, engine, extra, log)
            .unwrap_or_else(|(code, lines)| panic!("node did not start (exit {code:?}): {lines:?}"))
    }

    /// Starts a node; when it exits (or stays silent for 30 s) instead of listening,
    /// returns its exit code and what it wrote on stderr.
    pub fn try_start(
        data: &Path,
        engine: Engine,
        extra: &[&str],
        log: Option<&str>,
    ) -> Result<Node, (Option<i32>, Vec<String>)> {
        let mut command = Command::new(BIN);
        match log {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        let mut child = command
            .args([
                "serve",
                "--data",
                data.to_str().expect("utf-8 path"),
                "--listen",
                "127.0.0.1:0",
                "--engine",
                engine.name(),
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let collected = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("datamesh listening on ") {
                    let _ = tx.send(Some(addr.to_owned()));
                }
                if let Ok(mut l) = collected.lock() {
                    l.push(line);
                }
            }
            // stderr closed: the process ended (or closed it) without listening.
            let _ = tx.send(None);
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(addr)) => Ok(Node {
                child,
                url: format!("http://{addr}"),
                stderr: lines,
            }),
            _ => {
                let _ = child.kill();
                let code = child.wait().ok().and_then(|s| s.code());
                let lines = lines.lock().map(|l| l.clone()).unwrap_or_default();
                Err((code, lines))
            }
        }
    }

    pub async fn client(&self) -> DataMeshClient<Channel> {
        DataMeshClient::connect(self.url.clone())
            .await
            .expect("connect")
    }

    /// `datamesh <args>` against this node: (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        cli_at(&self.url, args)
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        self.kill9();
        None
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `datamesh <args>` against the node at `url`: (exit code, stdout, stderr).
pub fn cli_at(url: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("DATAMESH_NODE", url)
        .current_dir(root())
        .output()
        .expect("cli runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `datamesh token create --role ROLE --name NAME` for the data directory `data`
/// (running node or not): the token.
pub fn create_token(data: &Path, role: &str, name: &str) -> String {
    create_scoped(data, role, name, None)
}

/// As [`create_token`], limited to `scope` (comma-separated) when given.
pub fn create_scoped(data: &Path, role: &str, name: &str, scope: Option<&str>) -> String {
    let mut args = vec![
        "token",
        "create",
        "--role",
        role,
        "--name",
        name,
        "--data",
        data.to_str().expect("utf-8"),
    ];
    if let Some(scope) = scope {
        args.extend(["--scope", scope]);
    }
    let (code, out, err) = cli_at("http://127.0.0.1:1", &args);
    assert_eq!(code, 0, "{out}{err}");
    let line: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(line["role"], role);
    line["token"].as_str().expect("token").to_owned()
}

pub fn event(ty: &str, data: &str, stream: &str, id: &str) -> pb::Event {
    pb::Event {
        r#type: ty.into(),
        data: data.into(),
        stream: stream.into(),
        id: id.into(),
    }
}

pub async fn head(client: &mut DataMeshClient<Channel>) -> u64 {
    client
        .status(pb::StatusRequest {})
        .await
        .expect("status")
        .into_inner()
        .head
}

/// Every event in the node's log, in order (the node's own records, such as a link's
/// position, are not events: positions may skip them).
pub async fn read_all(client: &mut DataMeshClient<Channel>) -> Vec<pb::EventRecord> {
    let mut out: Vec<pb::EventRecord> = Vec::new();
    loop {
        let r = client
            .read(pb::ReadRequest {
                from_position: out.last().map_or(0, |e| e.position + 1),
                limit: 5000,
                stream: String::new(),
            })
            .await
            .expect("read")
            .into_inner();
        if r.events.is_empty() {
            return out;
        }
        out.extend(r.events);
    }
}

/// Asserts that `status` has `code` and that its message contains `needle`.
#[track_caller]
pub fn assert_refused(status: &tonic::Status, code: tonic::Code, needle: &str) {
    assert_eq!(status.code(), code, "{}", status.message());
    assert!(
        status.message().contains(needle),
        "{:?} without `{needle}`: {}",
        status.code(),
        status.message()
    );
}

/// A node of a test mesh: a name, its own data directory and Unix socket (so a
/// restarted node keeps its address), and the peers it imports from, by socket.
pub struct Member {
    pub name: String,
    pub engine: Engine,
    pub data: PathBuf,
    pub socket: PathBuf,
    pub peers: Vec<(String, PathBuf)>,
    pub node: Option<Node>,
}

impl Member {
    pub fn new(dir: &Path, name: &str, peers: &[&Member]) -> Member {
        Member {
            name: name.to_owned(),
            engine: Engine::Jit,
            data: dir.join(name),
            socket: dir.join(format!("{name}.sock")),
            peers: peers
                .iter()
                .map(|p| (p.name.clone(), p.socket.clone()))
                .collect(),
            node: None,
        }
    }

    pub fn start(&mut self) -> &mut Self {
        let socket = self.socket.to_str().expect("utf-8").to_owned();
        let mut args = vec![
            "--name".to_owned(),
            self.name.clone(),
            "--socket".to_owned(),
            socket,
        ];
        for (peer, socket) in &self.peers {
            args.push("--peer".to_owned());
            args.push(format!("{peer}=unix:{}", socket.display()));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.node = Some(Node::start(&self.data, self.engine, &args));
        self
    }

    pub fn node(&self) -> &Node {
        self.node.as_ref().expect("running")
    }

    pub fn kill9(&mut self) {
        if let Some(mut node) = self.node.take() {
            node.kill9();
        }
    }

    /// SIGTERM; the exit code (`None` when it had to be killed after 5 s).
    pub fn terminate(&mut self) -> Option<i32> {
        self.node.take().and_then(|mut node| node.terminate())
    }

    pub async fn client(&self) -> DataMeshClient<Channel> {
        self.node().client().await
    }
}

/// Starts a mesh in one call: each `(name, peers)` in order (a peer before the nodes
/// that import from it), every node on `engine`, each with its own data directory and
/// socket under `dir`.
pub fn start_mesh(dir: &Path, engine: Engine, spec: &[(&str, &[&str])]) -> Vec<Member> {
    let mut members: Vec<Member> = Vec::with_capacity(spec.len());
    for (name, peers) in spec {
        let known: Vec<&Member> = peers
            .iter()
            .map(|p| {
                members
                    .iter()
                    .find(|m| m.name == *p)
                    .unwrap_or_else(|| panic!("peer `{p}` of `{name}` is not started before it"))
            })
            .collect();
        let mut member = Member::new(dir, name, &known);
        member.engine = engine;
        member.start();
        members.push(member);
    }
    members
}
