//! The projection engine: folds the log into every deployed projection.
//!
//! A thread of its own (`datamesh-engine`) waits for the log head to move (the log's
//! writer unparks it), then runs a batch: it reads
//! chunks of events from the lowest projection position, decodes each event once per
//! program (building only the fields some handler reads), and folds it into the
//! document table ([`DocTable`]) of every projection that has not yet applied it. The
//! tables are write-back caches in front of the projections' keyspaces: a document is
//! loaded on first use and changed in place. The batch ends at the log head, or once it
//! holds enough changed documents or has run long enough; then the changed documents of
//! all projections are written, each once, together with their new checkpoints, in one
//! fjall transaction.
//!
//! Handlers run on the engine chosen at start ([`EngineKind`]): by default the Cranelift
//! JIT (each program is compiled once: on deploy before it is registered, with no lock
//! held; after a restart in the background while the interpreter runs it; its code is
//! freed when no projection of it can run any more), with tables of compiled-layout
//! documents; or the reference interpreter, with tables of values. A program the JIT
//! cannot compile, or with a handler past the JIT's size threshold, runs on the
//! interpreter.
//!
//! At start the projections are checked against the log ([`Engine::start`]): one
//! whose checkpoint is past the log head, or every one when the store was folded from
//! another log (its recorded log identity differs), is rebuilt from position 0. A
//! record the engine cannot read ([`crate::log::LogError::Corrupt`]) faults only the
//! projections that still need it; the others go on.
//!
//! Invariants: a projection applies each event exactly once (checkpoint and documents
//! commit together); projections that are caught up advance together, so a reader sees
//! them at one position; a trap faults only its projection, at the event that trapped,
//! leaving its documents as they were before that event; between batches a table holds
//! only documents equal to the store's (the engine is the keyspaces' only writer).

mod ahead;
mod registry;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use datamesh_compiler::codegen::JitScratch;
use datamesh_compiler::codegen::layout::Doc;
use datamesh_compiler::exec::Meta;
use datamesh_compiler::exec::codec::decode_payload_into;
use datamesh_compiler::exec::fold::TableFold;
use datamesh_compiler::exec::table::DocTable;
use datamesh_compiler::ir::Program;
use datamesh_stdlib::Value;
use tokio::sync::{oneshot, watch};

use crate::log::{FrameRef, Frames, Log};
use crate::store::encoding::{DocTooLarge, MAX_DOC_BYTES, decode_key};
use crate::store::{Commit, Fault, MAX_KEY_BYTES, Store, StoreError};
use ahead::{Ahead, Plan};
pub use registry::{
    CheckedProgram, DeployError, DeployLimits, DeployOutcome, JIT_MAX_HANDLER_NODES,
    JIT_MAX_PROGRAM_NODES, LifecycleError, MAX_HANDLER_NODES, ProjectionInfo, Registry,
    compile_checked, handler_nodes,
};

/// Events read from the log at a time.
#[cfg(not(test))]
const CHUNK: usize = 32_768;
/// Tests use tiny chunks, batches and tables, so every boundary is crossed often.
#[cfg(test)]
const CHUNK: usize = 97;

/// A batch (one store commit) goes on reading chunks while it is catching up, until it
/// reaches the head, has this many changed documents, or has run this long. Large
/// batches are what make catching up fast: a document touched many times in a batch is
/// written to fjall once. A live engine commits whatever is new at once.
#[cfg(not(test))]
const BATCH_DIRTY: usize = 131_072;
#[cfg(test)]
const BATCH_DIRTY: usize = 7;
const BATCH_TIME: Duration = Duration::from_millis(250);

/// Documents kept in memory per projection between batches (the engine is the only
/// writer, so its cache is always coherent with the store).
#[cfg(not(test))]
const CACHE_DOCS: usize = 200_000;
#[cfg(test)]
const CACHE_DOCS: usize = 20;

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
    /// Answered when the engine thread ends.
    ended: Arc<std::sync::Mutex<Option<oneshot::Receiver<()>>>>,
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
    /// The engine thread, once it runs: unparked to look for work (see [`Shared::wake`]).
    thread: std::sync::OnceLock<std::thread::Thread>,
    /// Set by [`Engine::stop`]: the thread ends after the batch in progress.
    stop: AtomicBool,
    /// Set by the compile thread while compiled code waits to be installed: the batch
    /// in progress (which holds the registry's read lock) ends at its next chunk, so
    /// a rebuild after a restart runs on the interpreter for one chunk, not a batch.
    code_waiting: AtomicBool,
    /// Set when the store failed: the engine stops rather than diverge.
    failure: RwLock<Option<String>>,
    /// The engine handlers run on.
    kind: EngineKind,
    /// What a deploy may bring.
    limits: DeployLimits,
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
    /// The engine thread could not be started.
    #[error("cannot start the projection engine's thread: {0}")]
    Thread(std::io::Error),
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.get() {
            self.log.stop_unparking(thread.id());
        }
    }
}

impl Shared {
    /// Has the engine thread look for work now (a deploy, new code, a stop): it runs
    /// a batch if any projection is behind the head.
    fn wake(&self) {
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }
}

/// One projection's documents in memory: the write-back cache in front of its
/// keyspace, in the form its engine works on (the JIT's fixed layout, or the
/// interpreter's values). Between batches it holds only clean documents.
enum Docs {
    Jit(DocTable<Doc>),
    Interp(DocTable<Vec<Value>>),
}

impl Docs {
    fn new(jit: bool) -> Docs {
        if jit {
            Docs::Jit(DocTable::new())
        } else {
            Docs::Interp(DocTable::new())
        }
    }

    fn is_jit(&self) -> bool {
        matches!(self, Docs::Jit(_))
    }
}

impl Engine {
    /// Loads the deployed programs from the store, rebuilds the projections whose
    /// state does not belong to this log (`reconcile`) and starts folding. With the
    /// JIT, programs are compiled in the background: the interpreter runs them until
    /// their code is installed, so a start does not wait for Cranelift.
    ///
    /// # Errors
    /// Store errors.
    pub fn start(log: Log, store: Arc<Store>, kind: EngineKind) -> Result<Engine, EngineError> {
        Engine::start_with_limits(log, store, kind, DeployLimits::default())
    }

    /// [`Engine::start`] with deploy limits other than the defaults.
    ///
    /// # Errors
    /// Store errors.
    pub fn start_with_limits(
        log: Log,
        store: Arc<Store>,
        kind: EngineKind,
        limits: DeployLimits,
    ) -> Result<Engine, EngineError> {
        let mut registry = Registry::load(&store)?;
        reconcile(&mut registry, &store, &log)?;
        let to_compile = match kind {
            EngineKind::Jit => registry.to_compile(&limits),
            EngineKind::Interp => Vec::new(),
        };
        let (progress, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            log,
            store,
            registry: RwLock::new(registry),
            progress,
            thread: std::sync::OnceLock::new(),
            stop: AtomicBool::new(false),
            code_waiting: AtomicBool::new(false),
            failure: RwLock::new(None),
            kind,
            limits,
        });
        if !to_compile.is_empty() {
            compile_in_background(Arc::downgrade(&shared), to_compile);
        }
        let (ended_tx, ended) = oneshot::channel();
        let weak = Arc::downgrade(&shared);
        let thread = std::thread::Builder::new()
            .name("datamesh-engine".into())
            .spawn(move || {
                run(&weak);
                let _ = ended_tx.send(());
            })
            .map_err(EngineError::Thread)?;
        let _ = shared.thread.set(thread.thread().clone());
        shared.log.unpark_on_publish(thread.thread().clone());
        // Work that arrived before the thread was known to the log is looked for now.
        shared.wake();
        Ok(Engine {
            shared,
            ended: Arc::new(std::sync::Mutex::new(Some(ended))),
        })
    }

    /// Stops folding: waits for the batch in progress to commit, then ends the thread.
    /// Reads still work (from what is committed); nothing is folded any more.
    pub async fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake();
        let ended = self.ended.lock().ok().and_then(|mut t| t.take());
        if let Some(ended) = ended {
            let _ = ended.await;
        }
    }

    /// Compiles and deploys a program; its new projections start from position 0.
    ///
    /// Checking and compiling take no lock (a large program compiles for seconds, and
    /// appends, reads and status go on meanwhile); the registry's write lock is held
    /// only to validate the program again against what is registered now and record it.
    ///
    /// # Errors
    /// [`DeployError`]: diagnostics (limits included), conflicts with deployed
    /// definitions, store errors.
    pub fn deploy(&self, source: &str, origin: &str) -> Result<DeployOutcome, DeployError> {
        let limits = self.shared.limits;
        let checked = Registry::check(source, &limits)?;
        // Conflicts are found, and a program with nothing new answered, before paying
        // for the compile.
        let planned = {
            let registry = self
                .shared
                .registry
                .read()
                .map_err(|_| DeployError::Internal("registry lock".into()))?;
            registry.plan(&checked, false)?
        };
        if planned.brings_nothing() {
            return Ok(planned);
        }
        let checked = compile_checked(self.shared.kind, checked, &limits);
        let outcome = {
            let mut registry = self
                .shared
                .registry
                .write()
                .map_err(|_| DeployError::Internal("registry lock".into()))?;
            registry.register(&self.shared.store, source, origin, checked)?
        };
        self.shared.progress.send_modify(|p| *p += 1);
        self.shared.wake();
        Ok(outcome)
    }

    /// Promotes a projection version (see [`Registry::promote`]).
    ///
    /// # Errors
    /// [`LifecycleError`].
    pub fn promote(&self, name: &str, version: u32) -> Result<String, LifecycleError> {
        let mut registry = self
            .shared
            .registry
            .write()
            .map_err(|_| LifecycleError::Store(StoreError::Lock))?;
        registry.promote(&self.shared.store, name, version)
    }

    /// Retires a projection version (see [`Registry::retire`]); returns its label and
    /// the label reads now go to.
    ///
    /// # Errors
    /// [`LifecycleError`].
    pub fn retire(
        &self,
        name: &str,
        version: u32,
    ) -> Result<(String, Option<String>), LifecycleError> {
        let mut registry = self
            .shared
            .registry
            .write()
            .map_err(|_| LifecycleError::Store(StoreError::Lock))?;
        let label = registry.retire(&self.shared.store, name, version)?;
        let active = registry.resolve(name, None).map(|p| p.label.clone());
        drop(registry);
        self.shared.progress.send_modify(|p| *p += 1);
        Ok((label, active))
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

/// How long the idle engine thread parks before it looks again on its own: it is
/// unparked by every head move and every [`Shared::wake`], so this only bounds how long
/// a dropped engine's thread outlives it.
const IDLE_PARK: Duration = Duration::from_millis(200);

/// The engine thread: runs batches while a projection is behind the head, and parks
/// between them. Holds the engine weakly, so it ends once every [`Engine`] is dropped
/// (or at [`Engine::stop`], or when a batch fails).
fn run(weak: &std::sync::Weak<Shared>) {
    let mut caches: HashMap<String, Docs> = HashMap::new();
    loop {
        let Some(shared) = weak.upgrade() else {
            break;
        };
        if shared.stop.load(Ordering::Acquire) {
            break;
        }
        let work = shared
            .registry
            .read()
            .ok()
            .and_then(|r| r.lowest_pending(shared.log.head()));
        let Some(from) = work else {
            drop(shared);
            std::thread::park_timeout(IDLE_PARK);
            continue;
        };
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            apply_batch(&shared, from, &mut caches)
        }));
        let failure = match applied {
            Ok(Ok(())) => None,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "projection engine stopped");
                Some(e.to_string())
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_owned());
                tracing::error!(error = %what, "projection engine failed");
                Some(format!("projection engine failed: {what}"))
            }
        };
        if let Some(failure) = failure {
            if let Ok(mut f) = shared.failure.write() {
                *f = Some(failure);
            }
            break;
        }
        shared.progress.send_modify(|p| *p += 1);
    }
    if let Some(shared) = weak.upgrade() {
        shared.log.stop_unparking(std::thread::current().id());
    }
}

/// Checks the loaded projections against the log before anything folds, and rebuilds
/// (documents, checkpoint and fault dropped, folding again from position 0) those whose
/// state does not belong to it:
/// - every projection, when the store records another log identity than this log's
///   (the log directory was swapped or restored from elsewhere);
/// - one whose checkpoint is past the log head (the log lost records, e.g. damage
///   cut it): positions it applied now hold other events, or will;
/// - one whose previous rebuild was interrupted.
///
/// Each rebuild is logged at WARN with the projection and the reason. A projection
/// whose documents cannot be dropped is faulted instead (in memory: the next start
/// tries again), so it serves nothing it cannot vouch for. The log's identity is
/// recorded once every rebuild is done.
fn reconcile(registry: &mut Registry, store: &Store, log: &Log) -> Result<(), EngineError> {
    let head = log.head();
    let identity = log.identity();
    let recorded = store.log_identity()?;
    let interrupted = store.pending_rebuilds()?;
    let foreign = recorded.filter(|r| *r != identity);
    if let Some(recorded) = foreign {
        tracing::warn!(
            store = %format!("{recorded:032x}"),
            log = %format!("{identity:032x}"),
            "the projection store was folded from another log than this one (the log directory was replaced or restored): every projection is rebuilt from position 0"
        );
    }
    for projection in registry.projections.iter_mut().filter(|p| !p.retired) {
        let reason = if foreign.is_some() {
            "the store was folded from another log".to_owned()
        } else if interrupted.contains(&projection.label) {
            "its previous rebuild was interrupted".to_owned()
        } else if projection.position > head {
            format!(
                "its checkpoint {} is past the log head {head}: the log lost records it had applied, and new events will reuse their positions",
                projection.position
            )
        } else {
            continue;
        };
        match store.reset_projection(&projection.label, &projection.keyspace) {
            Ok(()) => {
                tracing::warn!(projection = %projection.label, reason = %reason, "rebuilding the projection from position 0");
                projection.position = 0;
                projection.fault = None;
                projection.caught_up = false;
                projection.since = (std::time::Instant::now(), 0);
            }
            Err(e) => {
                tracing::error!(projection = %projection.label, reason = %reason, error = %e, "the projection must be rebuilt but its documents cannot be dropped: it is faulted");
                projection.fault = Some(Fault::new(
                    projection.position,
                    "",
                    datamesh_compiler::codes::L0002,
                    format!(
                        "must be rebuilt ({reason}) but its documents cannot be dropped: {e}; restart to try again"
                    ),
                ));
            }
        }
    }
    // Interrupted rebuilds of projections no longer registered (retired) are cleared.
    for label in interrupted {
        if !registry
            .projections
            .iter()
            .any(|p| p.label == label && !p.retired)
            && let Some(p) = registry.projections.iter().find(|p| p.label == label)
        {
            store.reset_projection(&p.label, &p.keyspace)?;
        }
    }
    if recorded != Some(identity) {
        store.set_log_identity(identity)?;
    }
    Ok(())
}

/// Compiles programs loaded at start on a thread of its own, one at a time, installing
/// each one's code as it is ready (the interpreter runs them meanwhile). Holds the
/// engine weakly: an engine stopped and dropped meanwhile is not kept alive.
fn compile_in_background(shared: std::sync::Weak<Shared>, programs: Vec<(usize, Arc<Program>)>) {
    let spawned = std::thread::Builder::new()
        .name("datamesh-jit".into())
        .spawn(move || {
            let started = std::time::Instant::now();
            let count = programs.len();
            for (index, program) in programs {
                let compiled = registry::jit_for(&program);
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                if shared.stop.load(Ordering::Acquire) {
                    return;
                }
                if let Some(code) = compiled {
                    shared.code_waiting.store(true, Ordering::Release);
                    if let Ok(mut registry) = shared.registry.write() {
                        registry.install_jit(index, code);
                    }
                    shared.code_waiting.store(false, Ordering::Release);
                }
                shared.wake();
            }
            tracing::info!(
                programs = count,
                ms = started.elapsed().as_millis() as u64,
                "programs compiled by the JIT after start"
            );
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the JIT's compile thread: programs run on the interpreter");
    }
}

/// Reads one batch from `from` and applies it to every projection behind.
fn apply_batch(
    shared: &Shared,
    from: u64,
    caches: &mut HashMap<String, Docs>,
) -> Result<(), EngineError> {
    let registry = shared.registry.read().map_err(|_| StoreError::Lock)?;
    let mut batch = Batch::plan(&registry, caches);
    // Made here, on the engine thread, because compiled code's scratch state is
    // tied to one thread.
    let mut scratch = JitScratch::new();
    // The envelope's text (stream, id) is built for every event only when a handler
    // reads it.
    let mut envelope = Envelope {
        text: registry.programs.iter().any(|p| p.reads_text_meta()),
        ..Envelope::default()
    };
    // Catching up: a second thread reads, verifies and decodes the next chunk while
    // this one folds the last, so a rebuild uses both cores.
    let catching_up = shared.log.head().saturating_sub(from) > CHUNK as u64;
    let plan = catching_up.then(|| batch.plan_ahead(&registry));
    let started = std::time::Instant::now();
    let mut next = from;
    let mut fold = |chunk: Chunk, ahead: Option<&Ahead>| -> Result<bool, EngineError> {
        let (frames, mut unreadable) = chunk?;
        for (n, frame) in frames.iter().enumerate() {
            let record = match frame {
                Ok(record) => record,
                Err(error) => {
                    unreadable = Some(error);
                    break;
                }
            };
            let meta = envelope.meta(&record);
            let ahead = ahead.map(|rows| (rows, n));
            batch.apply_record(shared, &registry, &record, &meta, &mut scratch, ahead)?;
            next += 1;
        }
        if let Some(error) = unreadable {
            // Projections that need this record stop before it; the batch ends here,
            // and the next one starts from the lowest projection still running.
            batch.unreadable(&registry, next, &error);
            return Ok(false);
        }
        Ok(frames.len() == CHUNK
            && batch.pending() < BATCH_DIRTY
            && started.elapsed() < BATCH_TIME
            && !shared.code_waiting.load(Ordering::Acquire))
    };
    if let Some(plan) = plan {
        // Each chunk's rows go back to the reading thread, to be dropped where they
        // were made. `hungry` is set while the fold waits for a chunk: the reading
        // thread then hands over the one it is decoding, and the fold decodes the rest.
        let hungry = &AtomicBool::new(false);
        std::thread::scope(|scope| -> Result<(), EngineError> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<(Chunk, Ahead)>(1);
            let (spent_tx, spent_rx) = std::sync::mpsc::channel::<Ahead>();
            let log = &shared.log;
            scope.spawn(move || {
                let mut at = from;
                loop {
                    let chunk = read_chunk(log, at);
                    let mut ahead = spent_rx.try_recv().unwrap_or_default();
                    let last = match &chunk {
                        Ok((frames, unreadable)) => {
                            at = frames.end();
                            ahead.decode(&plan, frames, hungry);
                            unreadable.is_some() || frames.len() < CHUNK
                        }
                        Err(_) => true,
                    };
                    // The batch ended (the receiver is gone), or this was the last.
                    if tx.send((chunk, ahead)).is_err() || last {
                        return;
                    }
                }
            });
            loop {
                let received = match rx.try_recv() {
                    Err(std::sync::mpsc::TryRecvError::Empty) => {
                        hungry.store(true, Ordering::Relaxed);
                        let received = rx.recv();
                        hungry.store(false, Ordering::Relaxed);
                        received.ok()
                    }
                    received => received.ok(),
                };
                let Some((chunk, ahead)) = received else {
                    break;
                };
                let more = fold(chunk, Some(&ahead))?;
                // The reading thread may have stopped (this was its last chunk).
                let _ = spent_tx.send(ahead);
                if !more {
                    break;
                }
            }
            Ok(())
        })?;
    } else {
        let mut at = from;
        loop {
            let chunk = read_chunk(&shared.log, at);
            if let Ok((frames, _)) = &chunk {
                at = frames.end();
            }
            if !fold(chunk, None)? {
                break;
            }
        }
    }
    let Some(last) = next.checked_sub(1).filter(|_| next > from) else {
        let unreadable = std::mem::take(&mut batch.unreadable);
        batch.return_caches(&registry, caches);
        drop(registry);
        if !unreadable.is_empty() {
            // Their checkpoints are already at the unreadable record.
            let mut registry = shared.registry.write().map_err(|_| StoreError::Lock)?;
            fault_unreadable(&mut registry, unreadable, caches);
        }
        return Ok(());
    };
    let mut commit = Commit::default();
    for (i, projection) in registry.projections.iter().enumerate() {
        // A projection ahead of this batch (deployed earlier, already past it) applied
        // nothing: its checkpoint stays.
        let Some(docs) = batch.docs[i]
            .as_mut()
            .filter(|_| projection.position <= last)
        else {
            continue;
        };
        if let Err(too_large) = flush(&registry, i, docs, &mut commit) {
            // A document past the size limit is never written: nothing of this batch is
            // for this projection, its checkpoint stays where the batch found it, and it
            // faults there (the batch's events are named in the message).
            let to = batch.stopped[i].unwrap_or(last + 1).saturating_sub(1);
            batch.stopped[i] = Some(projection.position);
            batch.faults.retain(|(j, _)| *j != i);
            batch
                .faults
                .push((i, too_large.fault(projection.position, to)));
        }
        commit.checkpoints.push((
            projection.label.clone(),
            batch.stopped[i].unwrap_or(last + 1),
        ));
    }
    for (i, fault) in &batch.faults {
        commit
            .faults
            .push((registry.projections[*i].label.clone(), fault.clone()));
    }
    drop(registry);
    let folded = started.elapsed();
    shared.store.commit(commit)?;
    tracing::debug!(
        from,
        events = last + 1 - from,
        fold_ms = folded.as_millis() as u64,
        commit_ms = (started.elapsed() - folded).as_millis() as u64,
        decoded_ahead = catching_up,
        "batch applied"
    );
    let mut registry = shared.registry.write().map_err(|_| StoreError::Lock)?;
    let head = shared.log.head();
    // Projections deployed while this batch ran are not part of it: they start from
    // their own checkpoint on the next batch.
    for (i, docs) in batch.docs.into_iter().enumerate() {
        let (Some(mut docs), Some(projection)) = (docs, registry.projections.get_mut(i)) else {
            continue;
        };
        if projection.position > last {
            caches.insert(projection.label.clone(), docs);
            continue;
        }
        projection.position = batch.stopped[i].unwrap_or(last + 1);
        if projection.position >= head && !projection.caught_up {
            projection.caught_up = true;
            let (since, from) = projection.since;
            let events = projection.position.saturating_sub(from);
            if events > 0 {
                let seconds = since.elapsed().as_secs_f64();
                tracing::info!(
                    projection = %projection.label,
                    events,
                    seconds = format!("{seconds:.3}"),
                    events_per_second = (events as f64 / seconds.max(1e-9)).round() as u64,
                    "projection caught up with the log"
                );
            }
        }
        match &mut docs {
            Docs::Jit(table) => table.shrink_to(CACHE_DOCS),
            Docs::Interp(table) => table.shrink_to(CACHE_DOCS),
        }
        caches.insert(projection.label.clone(), docs);
    }
    let faulted = !batch.faults.is_empty();
    for (i, fault) in batch.faults {
        if let Some(p) = registry.projections.get_mut(i) {
            tracing::warn!(
                projection = %p.label,
                code = %fault.code,
                position = fault.position,
                event_type = %fault.event_type,
                fault = %fault.message,
                "projection faulted: it stops at this event, the other projections go on"
            );
            caches.remove(&p.label);
            p.fault = Some(fault);
        }
    }
    if faulted {
        registry.release_unused_code();
    }
    fault_unreadable(&mut registry, batch.unreadable, caches);
    Ok(())
}

/// A chunk of records read from the log, and the error of the record that stopped it.
type Chunk = Result<(Frames, Option<crate::log::LogError>), EngineError>;

/// Reads a chunk from `from`: the records up to the first that cannot be read, with
/// the damage when one cannot.
fn read_chunk(log: &Log, from: u64) -> Chunk {
    Ok(log.read_frames(from, CHUNK)?)
}

/// Faults, in memory only, the projections that could not read a log record (see
/// [`Batch::unreadable`]). Not recorded in the store: the record may read after the
/// log is repaired, so a restart tries it again (and faults them again if it still
/// does not read).
fn fault_unreadable(
    registry: &mut Registry,
    unreadable: Vec<(usize, Fault)>,
    caches: &mut HashMap<String, Docs>,
) {
    if unreadable.is_empty() {
        return;
    }
    for (i, fault) in unreadable {
        if let Some(p) = registry.projections.get_mut(i) {
            caches.remove(&p.label);
            p.fault = Some(fault);
        }
    }
    registry.release_unused_code();
}

/// Moves projection `i`'s changed documents into the commit, encoded for the store;
/// none of them when one encodes past [`MAX_DOC_BYTES`] (found without encoding more
/// than the limit of it).
fn flush(
    registry: &Registry,
    i: usize,
    docs: &mut Docs,
    commit: &mut Commit,
) -> Result<(), TooLarge> {
    let projection = &registry.projections[i];
    let keyspace = &projection.keyspace;
    let mut written = Vec::new();
    let mut write = |key: &[u8], doc: Option<Vec<u8>>| {
        written.push((keyspace.clone(), key.to_vec(), doc));
    };
    match docs {
        Docs::Jit(table) => match registry.jit(projection.program) {
            Some(code) => flush_table(code, projection.index, table, &mut write),
            None => Ok(()),
        },
        Docs::Interp(table) => {
            let program: &Program = &registry.programs[projection.program];
            flush_table(program, projection.index, table, &mut write)
        }
    }?;
    commit.docs.append(&mut written);
    Ok(())
}

/// Flushes a table's changed documents to `write`, encoded by their engine.
fn flush_table<E: TableFold>(
    engine: &E,
    projection: usize,
    table: &mut DocTable<E::Doc>,
    write: &mut impl FnMut(&[u8], Option<Vec<u8>>),
) -> Result<(), TooLarge> {
    table.flush(|key, doc| {
        let doc = stored(key, doc, |doc, bytes| {
            engine
                .encode_within(projection, doc, MAX_DOC_BYTES, bytes)
                .is_ok()
        })?;
        write(key, doc);
        Ok(())
    })
}

/// What the store gets for a changed document at `key` (`None`: deleted), encoded by
/// `encode` (false: past [`MAX_DOC_BYTES`]); a key or document over the store's limits
/// is [`TooLarge`].
fn stored<D>(
    key: &[u8],
    doc: Option<D>,
    encode: impl FnOnce(D, &mut Vec<u8>) -> bool,
) -> Result<Option<Vec<u8>>, TooLarge> {
    let too_large = || TooLarge { key: key.to_vec() };
    if key.len() > MAX_KEY_BYTES {
        return Err(too_large());
    }
    let Some(doc) = doc else {
        return Ok(None);
    };
    let mut bytes = Vec::with_capacity(64);
    if encode(doc, &mut bytes) {
        Ok(Some(bytes))
    } else {
        Err(too_large())
    }
}

/// A changed document that encodes past [`MAX_DOC_BYTES`], or whose key is longer than
/// the store holds ([`MAX_KEY_BYTES`], keys come from payloads): its projection faults.
struct TooLarge {
    key: Vec<u8>,
}

impl TooLarge {
    /// The fault of a projection whose events `from..=to` made the document too large.
    fn fault(&self, from: u64, to: u64) -> Fault {
        let full = decode_key(&self.key).map_or_else(
            || String::from("?"),
            |parts| datamesh_compiler::exec::codec::key_string(&parts),
        );
        // A key can be long: the fault names a bounded prefix of it.
        let mut key: String = full.chars().take(200).collect();
        if key.len() < full.len() {
            key.push('…');
        }
        let what = if self.key.len() > MAX_KEY_BYTES {
            format!(
                "a document key of {} bytes is longer than the store holds ({MAX_KEY_BYTES} bytes)",
                self.key.len()
            )
        } else {
            DocTooLarge {
                limit: MAX_DOC_BYTES,
            }
            .to_string()
        };
        Fault::new(
            from,
            "",
            datamesh_compiler::exec::LIMIT_CODE,
            format!(
                "{what}: the document at key {key}, after the events at positions {from} to {to} \
                 (none of which was written)"
            ),
        )
    }
}

/// Interns the envelope strings of consecutive records (a batch of one stream, or of
/// events without stream or id, allocates them once).
#[derive(Default)]
struct Envelope {
    /// Whether a handler reads `meta.stream`, `meta.type` or `meta.id`; without, the
    /// stream and id are left empty (the type is kept: faults name it).
    text: bool,
    stream: Option<Arc<str>>,
    event_type: Option<Arc<str>>,
    empty: Option<Arc<str>>,
}

impl Envelope {
    fn meta(&mut self, record: &FrameRef<'_>) -> Meta {
        fn intern(slot: &mut Option<Arc<str>>, text: &str) -> Arc<str> {
            match slot {
                Some(arc) if **arc == *text => arc.clone(),
                _ => slot.insert(Arc::from(text)).clone(),
            }
        }
        let empty = self.empty.get_or_insert_with(|| Arc::from("")).clone();
        Meta {
            position: i64::try_from(record.position).unwrap_or(i64::MAX),
            time: record.time,
            stream: if self.text {
                intern(&mut self.stream, record.stream)
            } else {
                empty.clone()
            },
            event_type: intern(&mut self.event_type, record.event_type),
            id: if record.id.is_empty() || !self.text {
                empty
            } else {
                Arc::from(record.id)
            },
        }
    }
}

/// The working state of one batch.
struct Batch {
    /// Per projection: its documents, when it takes part in this batch.
    docs: Vec<Option<Docs>>,
    /// Per projection: the position of the event that faulted it.
    stopped: Vec<Option<u64>>,
    /// Per program, per event type of that program: the projections with a handler.
    targets: Vec<Vec<Vec<usize>>>,
    /// Per program, per event type, per field: whether a handler reads it (the others
    /// are checked but not built when decoding).
    reads: Vec<Vec<Vec<bool>>>,
    /// The decoded row, reused from event to event.
    row: Vec<Value>,
    faults: Vec<(usize, Fault)>,
    /// Projections stopped by a log record that cannot be read (faulted in memory).
    unreadable: Vec<(usize, Fault)>,
}

impl Batch {
    /// Takes the caches of every projection that may apply part of this batch (every
    /// one not faulted).
    fn plan(registry: &Registry, caches: &mut HashMap<String, Docs>) -> Batch {
        let n = registry.projections.len();
        let mut docs: Vec<Option<Docs>> = Vec::with_capacity(n);
        let mut targets: Vec<Vec<Vec<usize>>> = registry
            .programs
            .iter()
            .map(|p| vec![Vec::new(); p.events.len()])
            .collect();
        for (i, projection) in registry.projections.iter().enumerate() {
            if projection.fault.is_some() || projection.retired {
                caches.remove(&projection.label);
                docs.push(None);
                continue;
            }
            let jit = registry.jit(projection.program).is_some();
            let cached = caches
                .remove(&projection.label)
                .filter(|d| d.is_jit() == jit);
            docs.push(Some(cached.unwrap_or_else(|| Docs::new(jit))));
            let program = &registry.programs[projection.program];
            for handler in &program.projections[projection.index].handlers {
                if let Some(list) = targets[projection.program].get_mut(handler.event)
                    && list.last() != Some(&i)
                {
                    list.push(i);
                }
            }
        }
        Batch {
            docs,
            stopped: vec![None; n],
            targets,
            reads: registry
                .programs
                .iter()
                .map(|p| p.event_fields_read())
                .collect(),
            row: Vec::new(),
            faults: Vec::new(),
            unreadable: Vec::new(),
        }
    }

    /// What the reading thread needs to decode this batch's events ahead of the fold.
    fn plan_ahead(&self, registry: &Registry) -> Plan {
        Plan {
            programs: registry.programs.clone(),
            targets: (self.targets.iter())
                .map(|events| events.iter().map(|t| !t.is_empty()).collect())
                .collect(),
            reads: self.reads.clone(),
        }
    }

    /// The log record at `position` cannot be read: every projection of this batch
    /// that still needs it (its checkpoint is at or before it) stops before it, with a
    /// fault naming the damage; the ones past it are not affected.
    fn unreadable(&mut self, registry: &Registry, position: u64, error: &crate::log::LogError) {
        for (i, projection) in registry.projections.iter().enumerate() {
            if self.docs[i].is_none() || self.stopped[i].is_some() || projection.position > position
            {
                continue;
            }
            tracing::error!(
                projection = %projection.label,
                position,
                error = %error,
                "a log record the projection needs cannot be read: the projection is faulted, the others go on"
            );
            self.stopped[i] = Some(position);
            let fault = Fault::new(
                position,
                "",
                datamesh_compiler::codes::L0001,
                format!(
                    "the log record cannot be read ({error}); repair the log, then restart the node to fold it again"
                ),
            );
            self.unreadable.push((i, fault));
        }
    }

    /// Changed documents, over every projection.
    fn pending(&self) -> usize {
        self.docs
            .iter()
            .flatten()
            .map(|d| match d {
                Docs::Jit(t) => t.pending(),
                Docs::Interp(t) => t.pending(),
            })
            .sum()
    }

    /// Puts the caches back unchanged (when the batch found nothing to apply).
    fn return_caches(self, registry: &Registry, caches: &mut HashMap<String, Docs>) {
        for (docs, projection) in self.docs.into_iter().zip(&registry.projections) {
            if let Some(docs) = docs {
                caches.insert(projection.label.clone(), docs);
            }
        }
    }

    fn apply_record(
        &mut self,
        shared: &Shared,
        registry: &Registry,
        record: &FrameRef<'_>,
        meta: &Meta,
        scratch: &mut JitScratch,
        ahead: Option<(&Ahead, usize)>,
    ) -> Result<(), EngineError> {
        for (program_index, program) in registry.programs.iter().enumerate() {
            let Some(event) = program.event_id(record.event_type) else {
                continue;
            };
            let Some(targets) = self.targets[program_index].get(event) else {
                continue;
            };
            let live = |i: usize, stopped: &[Option<u64>]| {
                stopped[i].is_none() && registry.projections[i].position <= record.position
            };
            if !targets.iter().any(|&i| live(i, &self.stopped)) {
                continue;
            }
            // Decoded once for every projection of this program (ahead, on the reading
            // thread, while catching up).
            let decoded = match ahead.and_then(|(rows, n)| rows.row(n, program_index)) {
                Some(Ok(row)) => Ok(row),
                Some(Err(e)) => Err(e.clone()),
                None => {
                    let read = self.reads[program_index].get(event).map(Vec::as_slice);
                    let declared = &program.events[event];
                    decode_payload_into(declared, record.payload, read, &mut self.row)
                        .map(|()| self.row.as_slice())
                }
            };
            let row = match decoded {
                Ok(row) => row,
                Err(e) => {
                    let message = format!(
                        "the event does not match `{}` as this program declares it: {e}",
                        record.event_type
                    );
                    for &j in targets {
                        if live(j, &self.stopped) {
                            self.stopped[j] = Some(record.position);
                            self.faults.push((
                                j,
                                Fault::new(
                                    record.position,
                                    record.event_type,
                                    datamesh_compiler::codes::R0006,
                                    message.clone(),
                                ),
                            ));
                        }
                    }
                    continue;
                }
            };
            // The row is encoded for compiled code once, for every projection.
            let mut prepared = None;
            for &i in targets {
                let projection = &registry.projections[i];
                if !live(i, &self.stopped) {
                    continue;
                }
                let Some(docs) = self.docs[i].as_mut() else {
                    continue;
                };
                let mut load_error = None;
                let outcome = {
                    let mut stored = |key: &[u8]| -> Option<Vec<u8>> {
                        let found = shared
                            .store
                            .keyspace(&projection.keyspace)
                            .and_then(|ks| shared.store.get(&ks, key));
                        found.unwrap_or_else(|e| {
                            load_error = Some(e);
                            None
                        })
                    };
                    match (docs, registry.jit(program_index)) {
                        (Docs::Jit(table), Some(code)) => {
                            if prepared.is_none() {
                                prepared = code.prepare(scratch, (event, row, meta));
                            }
                            match &prepared {
                                Some(prepared) => code.fold(
                                    scratch,
                                    projection.index,
                                    prepared,
                                    table,
                                    &mut stored,
                                ),
                                None => Ok(()),
                            }
                        }
                        (Docs::Interp(table), _) => {
                            let program: &Program = program;
                            let event = (event, row, meta);
                            program.fold(&mut (), projection.index, &event, table, &mut stored)
                        }
                        // The kinds match by construction (see `Batch::plan`).
                        (Docs::Jit(_), None) => Ok(()),
                    }
                };
                if let Some(e) = load_error {
                    return Err(e.into());
                }
                if let Err((trap, handler)) = outcome {
                    self.stopped[i] = Some(record.position);
                    self.faults.push((
                        i,
                        Fault::trap(record.position, record.event_type, &trap, handler),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
