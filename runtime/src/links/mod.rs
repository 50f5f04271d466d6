//! The links of a node: one per peer that a deployed program's `import` block names.
//!
//! A manager task compares the links running with the import blocks in force (the
//! newest deployed program with a block for a peer, see `Registry::imports`) whenever
//! the deployed programs change, and starts, restarts or stops links to match: a
//! deploy that brings or changes a peer's block restarts its link on the new block
//! from the link's checkpoint. `link reset` goes through the same manager.
//!
//! Invariant: at most one session of a link runs at a time. A link is stopped by
//! signalling it and waiting for its task to end (never by aborting it: an aborted
//! append may still be committed by the log writer, and a next session that read the
//! checkpoint before that commit would import the batch again).

pub mod link;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::engine::Engine;
use crate::log::Log;
use crate::mesh::checkpoint::{self, Checkpoint};
use link::Link;
pub use link::LinkState;

/// A node's place in the mesh: its name and the peers it knows (name -> address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshConfig {
    /// This node's name.
    pub name: String,
    /// Known peers by name: their addresses.
    pub peers: BTreeMap<String, String>,
    /// Files holding the token this node presents to a peer it imports from (a
    /// `peer:THIS_NODE` token of that peer), by peer name; read at each connection.
    pub tokens: BTreeMap<String, std::path::PathBuf>,
    /// The TLS of this node's links to `https://` peers (set from the node's own
    /// certificate, key and CA when it serves TLS).
    pub tls: crate::tls::ClientTls,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            name: crate::mesh::DEFAULT_NAME.to_owned(),
            peers: BTreeMap::new(),
            tokens: BTreeMap::new(),
            tls: crate::tls::ClientTls::default(),
        }
    }
}

/// How often the manager looks for deploys.
const POLL: Duration = Duration::from_millis(100);

/// A running link.
struct Running {
    /// The program whose block it runs.
    program: usize,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// The links of a node. Cheap to clone.
#[derive(Clone)]
pub struct Links {
    inner: Arc<Inner>,
}

struct Inner {
    log: Log,
    engine: Engine,
    mesh: MeshConfig,
    max_event_bytes: usize,
    running: tokio::sync::Mutex<BTreeMap<String, Running>>,
    /// The status of each link, readable without the manager's lock.
    statuses: Mutex<BTreeMap<String, Arc<Mutex<LinkState>>>>,
    stop: watch::Sender<bool>,
    manager: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Why a link reset was refused.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// No deployed program imports from that peer.
    #[error("no deployed program has an `import {0}` block, so there is no link to reset")]
    NoLink(String),
    /// The log refused the reset record.
    #[error("{0}")]
    Log(#[from] crate::log::LogError),
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links")
            .field("links", &self.status())
            .finish_non_exhaustive()
    }
}

impl Links {
    /// Starts the manager (links start as programs with import blocks are found).
    pub fn start(log: Log, engine: Engine, mesh: MeshConfig, max_event_bytes: usize) -> Links {
        let (stop, _) = watch::channel(false);
        let links = Links {
            inner: Arc::new(Inner {
                log,
                engine,
                mesh,
                max_event_bytes,
                running: tokio::sync::Mutex::new(BTreeMap::new()),
                statuses: Mutex::new(BTreeMap::new()),
                stop,
                manager: Mutex::new(None),
            }),
        };
        let manager = links.clone();
        let task = tokio::spawn(async move { manager.manage().await });
        if let Ok(mut slot) = links.inner.manager.lock() {
            *slot = Some(task);
        }
        links
    }

    /// The status of every link, by peer.
    pub fn status(&self) -> Vec<LinkState> {
        let statuses = self
            .inner
            .statuses
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        statuses
            .values()
            .filter_map(|s| s.lock().ok().map(|s| s.clone()))
            .collect()
    }

    /// Stops every link (each after its batch in flight) and the manager.
    pub async fn stop(&self) {
        self.inner.stop.send_replace(true);
        let manager = self.inner.manager.lock().ok().and_then(|mut m| m.take());
        if let Some(manager) = manager {
            let _ = manager.await;
        }
        let mut running = self.inner.running.lock().await;
        for (_, link) in std::mem::take(&mut *running) {
            stop_link(link).await;
        }
    }

    /// Moves the link to `peer` to peer position `from`: stops it, appends a `$link`
    /// record that accepts the peer's log as it is now (no identity) with `note`, and
    /// starts it again. Returns the record's position.
    ///
    /// # Errors
    /// [`ResetError`].
    pub async fn reset(&self, peer: &str, from: u64, note: &str) -> Result<u64, ResetError> {
        let mut running = self.inner.running.lock().await;
        let wanted = self.wanted();
        let Some((index, program, block)) = wanted.get(peer).cloned() else {
            return Err(ResetError::NoLink(peer.to_owned()));
        };
        if let Some(link) = running.remove(peer) {
            stop_link(link).await;
        }
        let last = checkpoint::last(&self.inner.log, peer)?;
        let record = Checkpoint {
            peer: peer.to_owned(),
            identity: String::new(),
            position: from,
            imported: last.map_or(0, |c| c.imported),
            last_time: 0,
            reset: Some(if note.is_empty() {
                "link reset".to_owned()
            } else {
                note.to_owned()
            }),
        };
        let appended = self
            .inner
            .log
            .append(vec![record.record()], Vec::new())
            .await;
        // Whatever the append did, the link runs again (from what the log holds).
        let started = self.start_link(peer, (index, program), block);
        running.insert(peer.to_owned(), started);
        let appended = appended?;
        tracing::info!(peer, from, note, "link reset");
        Ok(appended.positions.first().copied().unwrap_or_default())
    }

    /// The import blocks in force: peer -> (program index, program, block index).
    fn wanted(&self) -> BTreeMap<String, (usize, Arc<datamesh_compiler::ir::Program>, usize)> {
        self.inner
            .engine
            .with_registry(|r| {
                r.imports()
                    .into_iter()
                    .map(|(peer, index, program, block)| (peer, (index, program, block)))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn manage(&self) {
        let mut stop = self.inner.stop.subscribe();
        let mut seen = usize::MAX;
        loop {
            let deployed = self
                .inner
                .engine
                .with_registry(|r| r.programs.len())
                .unwrap_or(0);
            if deployed != seen {
                seen = deployed;
                self.reconcile().await;
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Starts, restarts and stops links to match the import blocks in force.
    async fn reconcile(&self) {
        let wanted = self.wanted();
        let mut running = self.inner.running.lock().await;
        let gone: Vec<String> = running
            .keys()
            .filter(|peer| !wanted.contains_key(*peer))
            .cloned()
            .collect();
        for peer in gone {
            if let Some(link) = running.remove(&peer) {
                stop_link(link).await;
            }
            if let Ok(mut statuses) = self.inner.statuses.lock() {
                statuses.remove(&peer);
            }
        }
        for (peer, (index, program, block)) in wanted {
            if running.get(&peer).is_some_and(|r| r.program == index) {
                continue;
            }
            if let Some(link) = running.remove(&peer) {
                stop_link(link).await;
            }
            tracing::info!(peer = %peer, program = index, "starting the link");
            let started = self.start_link(&peer, (index, program), block);
            running.insert(peer, started);
        }
    }

    fn start_link(
        &self,
        peer: &str,
        (index, program): (usize, Arc<datamesh_compiler::ir::Program>),
        block: usize,
    ) -> Running {
        let status = self
            .inner
            .statuses
            .lock()
            .ok()
            .map(|mut statuses| {
                statuses
                    .entry(peer.to_owned())
                    .or_insert_with(|| {
                        Arc::new(Mutex::new(LinkState {
                            peer: peer.to_owned(),
                            state: "connecting",
                            ..LinkState::default()
                        }))
                    })
                    .clone()
            })
            .unwrap_or_default();
        let link = Link {
            me: self.inner.mesh.name.clone(),
            peer: peer.to_owned(),
            address: self.inner.mesh.peers.get(peer).cloned(),
            token: self.inner.mesh.tokens.get(peer).cloned(),
            tls: self.inner.mesh.tls.clone(),
            program,
            index,
            block,
            engine: self.inner.engine.clone(),
            log: self.inner.log.clone(),
            max_event_bytes: self.inner.max_event_bytes,
            status,
        };
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(link.run(stopped));
        Running {
            program: index,
            stop,
            task,
        }
    }
}

/// Stops a link and waits until its task has ended.
async fn stop_link(link: Running) {
    link.stop.send_replace(true);
    let _ = link.task.await;
}
