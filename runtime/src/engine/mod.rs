//! The projection engine: folds the log into every deployed projection.
//!
//! A background task waits for the log head to move, reads a batch of events from the
//! lowest projection position, decodes each event once per program, runs the handlers
//! of every projection that has not yet applied it, and commits the touched documents of all
//! projections together with their new checkpoints in one fjall transaction.
//!
//! Handlers run on the engine chosen at start ([`EngineKind`]): by default the Cranelift
//! JIT (each program is compiled once, when it is registered, and its code is freed when
//! no projection of it can run any more), or the reference interpreter. A program the
//! JIT cannot compile runs on the interpreter. Both go through the same `apply_event`
//! contract (one event, one projection, documents loaded by key, an overlay or a trap),
//! so the rest of the engine does not know which one ran.
//!
//! Invariants: a projection applies each event exactly once (checkpoint and documents
//! commit together); projections that are caught up advance together, so a reader sees
//! them at one position; a trap faults only its projection, at the event that trapped,
//! leaving its documents as they were before that event.

mod registry;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use datamesh_compiler::codec::decode_payload_bytes;
use datamesh_compiler::codegen::JitScratch;
use datamesh_compiler::interp::{Meta, apply_event};
use datamesh_stdlib::Value;
use tokio::sync::{Notify, watch};

use crate::log::{Log, Record};
use crate::store::encoding::{decode_doc, encode_doc, encode_key};
use crate::store::{Commit, Store, StoreError};
pub use registry::{DeployError, DeployOutcome, ProjectionInfo, Registry};

/// Events read per batch. Large batches matter when catching up: a document touched
/// many times in a batch is written to fjall once. A live engine reads whatever is new.
const BATCH: usize = 32_768;

/// Documents kept in memory per projection between batches (the engine is the only
/// writer, so its cache is always coherent with the store).
const CACHE_DOCS: usize = 200_000;

/// Which engine runs the handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineKind {
    /// Native code from the Cranelift JIT (the interpreter for programs it cannot
    /// compile).
    #[default]
    Jit,
    /// The reference interpreter.
    Interp,
}

impl EngineKind {
    /// The name used on the command line and in `status`.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Jit => "jit",
            EngineKind::Interp => "interp",
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The engine of one node.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

struct Shared {
    log: Log,
    store: Arc<Store>,
    registry: RwLock<Registry>,
    /// Bumped after every committed batch and every deploy.
    progress: watch::Sender<u64>,
    wake: Notify,
    /// Set when the store failed: the engine stops rather than diverge.
    failure: RwLock<Option<String>>,
    /// The engine handlers run on.
    kind: EngineKind,
}

/// An engine error.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The log failed.
    #[error(transparent)]
    Log(#[from] crate::log::LogError),
}

/// Per-projection document cache: `None` caches "no document".
type Cache = HashMap<Vec<Value>, Option<Vec<Value>>, BuildFxHasher>;

/// A fast, non-cryptographic hasher for the engine's in-memory maps (their keys come
/// from the log the node owns; no untrusted party chooses them to collide).
#[derive(Default, Clone, Copy)]
struct BuildFxHasher;

impl std::hash::BuildHasher for BuildFxHasher {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher(0)
    }
}

/// The multiply-rotate hash of rustc (FxHash), with a final mix so the low bits that
/// index the table depend on every input byte.
struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn finish(&self) -> u64 {
        let h = self.0;
        (h ^ (h >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ (h >> 32)
    }
}

impl Engine {
    /// Loads the deployed programs from the store (compiling them for `kind`) and
    /// starts folding.
    ///
    /// # Errors
    /// Store errors.
    pub fn start(log: Log, store: Arc<Store>, kind: EngineKind) -> Result<Engine, EngineError> {
        let registry = Registry::load(&store, kind)?;
        let (progress, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            log,
            store,
            registry: RwLock::new(registry),
            progress,
            wake: Notify::new(),
            failure: RwLock::new(None),
            kind,
        });
        let task = shared.clone();
        tokio::spawn(async move { run(task).await });
        Ok(Engine { shared })
    }

    /// Compiles and deploys a program; its new projections start from position 0.
    ///
    /// # Errors
    /// [`DeployError`]: diagnostics, conflicts with deployed definitions, store errors.
    pub fn deploy(&self, source: &str, origin: &str) -> Result<DeployOutcome, DeployError> {
        let outcome = {
            let mut registry = self
                .shared
                .registry
                .write()
                .map_err(|_| DeployError::Internal("registry lock".into()))?;
            registry.deploy(&self.shared.store, source, origin)?
        };
        self.shared.progress.send_modify(|p| *p += 1);
        self.shared.wake.notify_one();
        Ok(outcome)
    }

    /// Runs `f` with the registry (projections, schemas, positions).
    pub fn with_registry<T>(&self, f: impl FnOnce(&Registry) -> T) -> Option<T> {
        // A panic elsewhere must not hide the registry from readers.
        let guard = self
            .shared
            .registry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(f(&guard))
    }

    /// The engine handlers run on (programs the JIT cannot compile excepted).
    pub fn kind(&self) -> EngineKind {
        self.shared.kind
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.shared.store
    }

    /// Why the engine stopped, if it did.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure.read().ok().and_then(|f| f.clone())
    }

    /// Waits until projection `label` has applied every event before `position`, or
    /// until `timeout`. Returns its position then.
    pub async fn wait_for(&self, label: &str, position: u64, timeout: Duration) -> Option<u64> {
        let mut progress = self.shared.progress.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let current = self.with_registry(|r| r.position(label)).flatten()?;
            if current >= position {
                return Some(current);
            }
            let faulted = self.with_registry(|r| r.is_faulted(label)).unwrap_or(true);
            if faulted {
                return Some(current);
            }
            match tokio::time::timeout_at(deadline, progress.changed()).await {
                Ok(Ok(())) => {}
                _ => return Some(current),
            }
        }
    }
}

async fn run(shared: Arc<Shared>) {
    let mut head = shared.log.watch_head();
    let mut caches: HashMap<String, Cache> = HashMap::new();
    loop {
        let work = shared
            .registry
            .read()
            .ok()
            .and_then(|r| r.lowest_pending(shared.log.head()));
        let Some(from) = work else {
            tokio::select! {
                changed = head.changed() => if changed.is_err() { return },
                () = shared.wake.notified() => {}
            }
            continue;
        };
        let task = shared.clone();
        let mut owned = std::mem::take(&mut caches);
        let result = tokio::task::spawn_blocking(move || {
            let r = apply_batch(&task, from, &mut owned);
            (r, owned)
        })
        .await;
        match result {
            Ok((Ok(()), returned)) => caches = returned,
            Ok((Err(e), _)) => {
                tracing::error!(error = %e, "projection engine stopped");
                if let Ok(mut f) = shared.failure.write() {
                    *f = Some(e.to_string());
                }
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "projection engine task failed");
                if let Ok(mut f) = shared.failure.write() {
                    *f = Some(format!("projection engine failed: {e}"));
                }
                return;
            }
        }
        shared.progress.send_modify(|p| *p += 1);
    }
}

/// Reads one batch from `from` and applies it to every projection behind.
fn apply_batch(
    shared: &Shared,
    from: u64,
    caches: &mut HashMap<String, Cache>,
) -> Result<(), EngineError> {
    let records = shared.log.read(from, BATCH)?;
    let Some(last) = records.last().map(|r| r.position) else {
        return Ok(());
    };
    let registry = shared.registry.read().map_err(|_| StoreError::Lock)?;
    let mut commit = Commit::default();
    let mut faults: Vec<(usize, String)> = Vec::new();
    // Touched documents per projection in this batch.
    let mut touched: Vec<Cache> = vec![Cache::default(); registry.projections.len()];
    let mut stopped: Vec<Option<u64>> = vec![None; registry.projections.len()];
    // Made here, inside the blocking task, because compiled code's scratch state is
    // tied to one thread; one per batch of up to `BATCH` events costs nothing.
    let mut scratch = JitScratch::new();
    for record in &records {
        apply_record(
            shared,
            &registry,
            record,
            &mut scratch,
            caches,
            &mut touched,
            &mut stopped,
            &mut faults,
        )?;
    }
    for (i, projection) in registry.projections.iter().enumerate() {
        if projection.fault.is_some() || projection.position > last {
            continue;
        }
        let next = stopped[i].unwrap_or(last + 1);
        let cache = caches.entry(projection.label.clone()).or_default();
        if cache.len() > CACHE_DOCS {
            cache.clear();
        }
        for (key, doc) in std::mem::take(&mut touched[i]) {
            commit.docs.push((
                projection.keyspace.clone(),
                encode_key(&key),
                doc.as_ref().map(|d| encode_doc(d)),
            ));
            cache.insert(key, doc);
        }
        commit.checkpoints.push((projection.label.clone(), next));
    }
    for (i, fault) in &faults {
        commit
            .faults
            .push((registry.projections[*i].label.clone(), fault.clone()));
    }
    drop(registry);
    shared.store.commit(commit)?;
    let mut registry = shared.registry.write().map_err(|_| StoreError::Lock)?;
    let head = shared.log.head();
    // Projections deployed while this batch ran are not part of it: they start from
    // their own checkpoint on the next batch.
    let known = stopped.len();
    for (i, projection) in registry.projections.iter_mut().enumerate().take(known) {
        if projection.fault.is_some() || projection.position > last {
            continue;
        }
        projection.position = stopped.get(i).copied().flatten().unwrap_or(last + 1);
        if projection.position >= head {
            projection.caught_up = true;
        }
    }
    let faulted = !faults.is_empty();
    for (i, fault) in faults {
        if let Some(p) = registry.projections.get_mut(i) {
            caches.remove(&p.label);
            p.fault = Some(fault);
        }
    }
    if faulted {
        registry.release_unused_code();
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn apply_record(
    shared: &Shared,
    registry: &Registry,
    record: &Record,
    scratch: &mut JitScratch,
    caches: &mut HashMap<String, Cache>,
    touched: &mut [Cache],
    stopped: &mut [Option<u64>],
    faults: &mut Vec<(usize, String)>,
) -> Result<(), EngineError> {
    let meta = Meta {
        position: i64::try_from(record.position).unwrap_or(i64::MAX),
        time: record.time,
        stream: Arc::from(record.stream.as_str()),
        event_type: Arc::from(record.event_type.as_str()),
        id: Arc::from(record.id.as_str()),
    };
    for (program_index, program) in registry.programs.iter().enumerate() {
        let Some(event) = program.event_id(&record.event_type) else {
            continue;
        };
        // `None`: the interpreter runs this program (chosen, or the JIT could not
        // compile it).
        let jit = registry.jit(program_index);
        let interested: Vec<usize> = registry
            .projections
            .iter()
            .enumerate()
            .filter(|(i, p)| {
                p.program == program_index
                    && p.fault.is_none()
                    && stopped[*i].is_none()
                    && p.position <= record.position
                    && program.projections[p.index]
                        .handlers
                        .iter()
                        .any(|h| h.event == event)
            })
            .map(|(i, _)| i)
            .collect();
        if interested.is_empty() {
            continue;
        }
        // Decode once for every projection of this program.
        let row = decode_payload_bytes(&program.events[event], &record.payload)
            .map_err(|e| e.to_string());
        let row = match row {
            Ok(row) => row,
            Err(message) => {
                for i in interested {
                    stopped[i] = Some(record.position);
                    faults.push((i, fault_json(record, "R0006", &format!("the event does not match `{}` as this program declares it: {message}", record.event_type), None)));
                }
                continue;
            }
        };
        for i in interested {
            let projection = &registry.projections[i];
            let ir = &program.projections[projection.index];
            if !caches.contains_key(&projection.label) {
                caches.insert(projection.label.clone(), Cache::default());
            }
            let Some(cache) = caches.get_mut(&projection.label) else {
                continue;
            };
            let batch = &touched[i];
            let mut load_error = None;
            let outcome = {
                let mut load = |key: &[Value]| -> Option<Vec<Value>> {
                    if let Some(doc) = batch.get(key) {
                        return doc.clone();
                    }
                    if let Some(doc) = cache.get(key) {
                        return doc.clone();
                    }
                    let stored = shared
                        .store
                        .keyspace(&projection.keyspace)
                        .and_then(|ks| shared.store.get(&ks, &encode_key(key)));
                    match stored {
                        Ok(Some(bytes)) => decode_doc(&bytes),
                        Ok(None) => None,
                        Err(e) => {
                            load_error = Some(e);
                            None
                        }
                    }
                };
                match jit {
                    Some(code) => {
                        code.apply_event(scratch, projection.index, event, &row, &meta, &mut load)
                    }
                    None => apply_event(ir, event, &row, &meta, &mut load),
                }
            };
            if let Some(e) = load_error {
                return Err(e.into());
            }
            match outcome {
                Ok(overlay) => touched[i].extend(overlay),
                Err((trap, handler)) => {
                    stopped[i] = Some(record.position);
                    faults.push((
                        i,
                        fault_json(
                            record,
                            trap.code(),
                            &trap.to_string(),
                            Some((trap.span, handler)),
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn fault_json(
    record: &Record,
    code: &str,
    message: &str,
    spans: Option<(datamesh_compiler::ast::Span, datamesh_compiler::ast::Span)>,
) -> String {
    let mut json = serde_json::json!({
        "position": record.position,
        "event_type": record.event_type,
        "code": code,
        "message": message,
    });
    if let Some((at, handler)) = spans {
        json["span"] = serde_json::json!([at.start, at.end]);
        json["handler"] = serde_json::json!([handler.start, handler.end]);
    }
    json.to_string()
}
