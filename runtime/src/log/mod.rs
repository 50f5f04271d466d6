//! The log: append-only, durable, totally ordered events in segment files.
//!
//! One writer thread owns the files and group-commits: it takes every append request
//! waiting in its queue, validates each one (expected stream versions, idempotency by
//! event id) against the log plus the requests before it in the same group, writes all
//! accepted events with one `write` and one `fdatasync`, and only then acknowledges
//! them and makes them visible to readers.
//!
//! The files: `<first:020>.seg` holds the records from position `first` on (see
//! `format.rs`); the last segment is the active one, every other one is sealed and
//! never changes again. When the writer rolls to a new segment it first syncs the one
//! it seals, so a sealed segment is always complete on disk. Once the records of the
//! sealed segment are acknowledged, a background thread writes its sidecar
//! `<first:020>.idx` (see `index.rs`): the record offsets, stream -> positions, id ->
//! position, max time, segment length and last frame checksum, under a checksum;
//! written to a temp name, synced, renamed, directory synced.
//!
//! Recovery on open costs the active segment, not the whole log: a sealed segment with
//! a valid idx (checksum and structure verify, its first position and segment length
//! match the file, and a spot check of a few frames agrees) is loaded from it; any
//! other sealed segment is scanned, verifying every frame, and its idx rewritten in the
//! background; the last segment is always scanned (on a second thread, while the
//! sealed ones load) and a torn or corrupt tail cut. The idx bytes of loaded segments
//! stay in memory as their offset tables and as chunks of the stream index, so a
//! restart copies and hashes nothing per sealed record (W7: 10 M events, ~0.2 s).
//!
//! Invariants: positions are dense and start at 0; a reader never sees an event that is
//! not on disk; after an I/O error on write or sync the log is poisoned and refuses
//! every later append (the bytes on disk past the last good sync are unknown, so
//! appending after them could leave a hole); a restart recovers. An idx is only a cache
//! of its segment: it describes only synced, acknowledged records, is never written
//! for the active segment nor after the log is poisoned, and a missing, corrupt,
//! truncated or stale one is never trusted (the segment is scanned instead). Loading an
//! idx does not re-verify every frame of its segment: damage inside a sealed segment
//! after its idx was written surfaces as [`LogError::Corrupt`] from the read that meets
//! it instead of at open.

mod format;
mod frames;
mod ids;
mod index;
pub mod repair;
mod scrub;
mod stats;
mod writer;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

pub use format::{FORMAT_VERSION, FrameError, FrameRef, HeaderError, MAX_BODY, Record};
pub use frames::Frames;
use index::{Offsets, SegmentIndex, StreamIndex};
pub use stats::LogStats;
use tokio::sync::{oneshot, watch};

/// The log's maps of client-chosen strings (streams, ids): foldhash, fast and seeded
/// per process, so keys a client picks cannot be made to collide.
pub(crate) type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Where the log lives and how it rolls.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Directory of the segment files.
    pub dir: PathBuf,
    /// A new segment starts when the active one would grow past this size.
    pub segment_bytes: u64,
}

impl LogConfig {
    /// Defaults: 128 MiB segments in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> LogConfig {
        LogConfig {
            dir: dir.into(),
            segment_bytes: 128 << 20,
        }
    }
}

/// An event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Event type.
    pub event_type: String,
    /// Payload, JSON text.
    pub payload: Vec<u8>,
    /// Stream, "" for none.
    pub stream: String,
    /// Client id for idempotency, "" for none.
    pub id: String,
    /// For an event imported from another node, the nodes it passed through
    /// (comma-separated, the one it was first written on first); "" for a local event.
    /// An imported event's id is not an idempotency key: the link's position in the
    /// log keeps imports exactly once.
    pub origin: String,
    /// For an imported event, its time on the node it was first written on (µs since
    /// the epoch); `None` for a local event, which gets its append time.
    pub time: Option<i64>,
}

impl NewEvent {
    /// A local event.
    pub fn local(
        event_type: impl Into<String>,
        payload: impl Into<Vec<u8>>,
        stream: impl Into<String>,
        id: impl Into<String>,
    ) -> NewEvent {
        NewEvent {
            event_type: event_type.into(),
            payload: payload.into(),
            stream: stream.into(),
            id: id.into(),
            origin: String::new(),
            time: None,
        }
    }

    /// The id the log deduplicates this event by: a local event's client id, if any.
    pub fn dedup_id(&self) -> Option<&str> {
        (!self.id.is_empty() && self.origin.is_empty()).then_some(self.id.as_str())
    }
}

/// An expectation about a stream's state, checked atomically with the append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// No check.
    Any,
    /// The stream has no event yet.
    NoStream,
    /// The stream's last event has this version.
    Exact(u64),
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expected::Any => f.write_str("any"),
            Expected::NoStream => f.write_str("no stream"),
            Expected::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Positions of the events, in request order.
    pub positions: Vec<u64>,
    /// Every id was already in the log: nothing was written, the original positions
    /// are returned.
    pub deduplicated: bool,
    /// Head after the append.
    pub head: u64,
}

/// Why an append or a read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// An expected stream version did not hold.
    #[error("stream `{stream}`: expected {expected}, but {}", match actual { Some(v) => format!("its last version is {v}"), None => "it has no events".to_owned() })]
    VersionConflict {
        /// The stream.
        stream: String,
        /// What the request expected.
        expected: Expected,
        /// The stream's last version, `None` when it has no events.
        actual: Option<u64>,
    },
    /// Some but not all ids of the request are already in the log.
    #[error(
        "event id `{id}` is already in the log at position {position}, but other events of this request are not: a retried request must be identical"
    )]
    PartialDuplicate {
        /// An id already present.
        id: String,
        /// Its position.
        position: u64,
    },
    /// An id already in the log names an event with other content.
    #[error(
        "event id `{id}` is already in the log at position {position} with other content (type, stream or payload differ): an id names one event, so a retry must send the same event; use a new id for a new event"
    )]
    IdConflict {
        /// The id.
        id: String,
        /// The position of the event that has it.
        position: u64,
    },
    /// The same id twice in one request.
    #[error("event id `{0}` appears twice in one request")]
    DuplicateIdInRequest(String),
    /// The log refuses writes after an I/O error.
    #[error("the log refuses writes after an I/O error ({0}); restart the node to recover")]
    Poisoned(String),
    /// An I/O error.
    #[error("log I/O error: {0}")]
    Io(String),
    /// The active segment is damaged before its end, and intact records after the
    /// damage prove it is not a torn write: cutting there would drop acknowledged
    /// events, so the log does not open.
    #[error(
        "log segment {segment} is damaged at byte {offset} (where position {position} should be), and {intact} intact records follow the damage (the first at byte {intact_offset}, position {intact_position}), so this is not a torn write. The node will not start rather than drop acknowledged events. Copy the data directory first, then `datamesh repair --data <DIR>` reports what a repair would keep and drop, and `datamesh repair --data <DIR> --apply` does it (dropped records are saved, not deleted)"
    )]
    Damaged {
        /// File name.
        segment: String,
        /// Byte offset of the damaged frame.
        offset: u64,
        /// The position the damaged frame should have held.
        position: u64,
        /// Intact records found after it.
        intact: u64,
        /// Where the first of them is.
        intact_offset: u64,
        /// Its position.
        intact_position: u64,
    },
    /// A segment's header cannot be used (another format, another log, damage).
    #[error("log segment {segment}: {reason}")]
    Header {
        /// File name.
        segment: String,
        /// What is wrong.
        reason: String,
    },
    /// A segment is corrupt before its end (not a torn tail).
    #[error("corrupt log segment {segment} at byte {offset}: {reason}")]
    Corrupt {
        /// File name.
        segment: String,
        /// Byte offset.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The log is shutting down.
    #[error("the log is closed")]
    Closed,
    /// Another process has the log open.
    #[error(
        "the log in {0} is in use by another process (a running node holds its lock): stop that node first; two processes must never open one log"
    )]
    Locked(String),
}

impl From<std::io::Error> for LogError {
    fn from(e: std::io::Error) -> Self {
        LogError::Io(e.to_string())
    }
}

/// A sealed or active segment as readers see it.
#[derive(Debug)]
struct Segment {
    first: u64,
    file: File,
    /// Byte offset of each record.
    offsets: Offsets,
    /// Bytes of durable records.
    len: u64,
}

/// What readers and the writer share: positions to bytes, and the stream index,
/// covering exactly the durable records. (Only the writer looks ids up: it owns the id
/// index.)
#[derive(Debug, Default)]
struct Index {
    segments: Vec<Segment>,
    streams: StreamIndex,
    head: u64,
    last_time: i64,
}

#[derive(Debug)]
struct Shared {
    index: RwLock<Index>,
    head: watch::Sender<u64>,
    poison: Mutex<Option<String>>,
    /// The log's identity (see [`Log::identity`]).
    identity: u128,
    /// Damage the background scrub found in sealed segments.
    damage: Mutex<Vec<LogError>>,
    /// Set when the background scrub has verified every segment it was given.
    scrubbed: std::sync::atomic::AtomicBool,
    /// What the writer did, for metrics.
    stats: LogStats,
    /// Threads unparked whenever the head moves (see [`Log::unpark_on_publish`]).
    unpark: RwLock<Vec<std::thread::Thread>>,
}

/// An append request on its way to the writer thread.
struct Job {
    events: Vec<NewEvent>,
    expected: Vec<(String, Expected)>,
    reply: oneshot::Sender<Result<Appended, LogError>>,
}

/// Recovery facts, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Records found.
    pub records: u64,
    /// Segments found.
    pub segments: usize,
    /// Bytes cut from the tail of the last segment.
    pub truncated_bytes: u64,
    /// Sealed segments loaded from their idx file.
    pub indexed_segments: usize,
    /// Segments scanned record by record: the last one, and every sealed one without a
    /// valid idx.
    pub scanned_segments: usize,
    /// The log was created by this open.
    pub created: bool,
}

/// The log. Cheap to clone; the writer thread stops when the last clone is dropped.
#[derive(Clone)]
pub struct Log {
    shared: Arc<Shared>,
    jobs: std::sync::mpsc::Sender<Job>,
    writer: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").field("head", &self.head()).finish()
    }
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.seg")
}

fn lock_poisoned<T>(_: T) -> LogError {
    LogError::Io("internal lock poisoned".to_owned())
}

impl Log {
    /// Opens (or creates) the log in `config.dir`: loads each sealed segment from its
    /// valid idx file or else scans it, verifying every record; scans the last segment
    /// and cuts its torn tail; starts the writer thread.
    ///
    /// # Errors
    /// I/O errors, and [`LogError::Corrupt`] when a scan finds a segment other than the
    /// last damaged (that is not a torn write, and cutting it would lose acknowledged
    /// events).
    pub fn open(config: LogConfig) -> Result<(Log, Recovery), LogError> {
        private_dir(&config.dir)?;
        let lock = lock_dir(&config.dir)?;
        let Recovered {
            index,
            recovery,
            active,
            seal,
            ids,
            missing,
            identity,
            to_scrub,
        } = recover(&config.dir)?;
        let (head_tx, _) = watch::channel(index.head);
        let shared = Arc::new(Shared {
            index: RwLock::new(index),
            head: head_tx,
            poison: Mutex::new(None),
            identity,
            damage: Mutex::new(Vec::new()),
            scrubbed: std::sync::atomic::AtomicBool::new(false),
            stats: LogStats::default(),
            unpark: RwLock::new(Vec::new()),
        });
        scrub::start(&config.dir, &shared, to_scrub);
        let (jobs, rx) = std::sync::mpsc::channel();
        let writer_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("datamesh-log-writer".to_owned())
            .spawn(move || {
                let recovered = writer::Recovered {
                    file: active,
                    seal,
                    ids,
                    missing,
                };
                writer::run(&config, &writer_shared, recovered, &rx);
                // The directory's lock lives exactly as long as the writer: released
                // when the last handle is closed (which joins this thread), never
                // held on by a background reader such as the scrub.
                drop(lock);
            })?;
        Ok((
            Log {
                shared,
                jobs,
                writer: Arc::new(Mutex::new(Some(handle))),
            },
            recovery,
        ))
    }

    /// Appends a batch atomically and durably.
    ///
    /// # Errors
    /// See [`LogError`]; on error nothing of the batch is in the log.
    pub async fn append(
        &self,
        events: Vec<NewEvent>,
        expected: Vec<(String, Expected)>,
    ) -> Result<Appended, LogError> {
        self.submit(events, expected).await
    }

    /// Queues a batch for the writer now and returns its outcome as a future, so the
    /// caller can prepare the next batch while this one is written and synced.
    /// Requests are committed in the order they were submitted. Dropping the future
    /// does not withdraw the request: it is committed (or refused) all the same.
    pub fn submit(
        &self,
        events: Vec<NewEvent>,
        expected: Vec<(String, Expected)>,
    ) -> impl std::future::Future<Output = Result<Appended, LogError>> + Send + 'static {
        let (reply, rx) = oneshot::channel();
        let sent = self
            .jobs
            .send(Job {
                events,
                expected,
                reply,
            })
            .map_err(|_| LogError::Closed);
        async move {
            sent?;
            rx.await.map_err(|_| LogError::Closed)?
        }
    }

    /// What the writer did (for the node's metrics).
    pub fn stats(&self) -> &LogStats {
        &self.shared.stats
    }

    /// One past the last durable position.
    pub fn head(&self) -> u64 {
        *self.shared.head.borrow()
    }

    /// Notified whenever the head moves.
    pub fn watch_head(&self) -> watch::Receiver<u64> {
        self.shared.head.subscribe()
    }

    /// Unparks `thread` whenever the head moves, until [`Log::stop_unparking`]: a
    /// thread that waits with [`std::thread::park`] hears of new records directly from
    /// the writer thread, with no task or channel in between.
    pub fn unpark_on_publish(&self, thread: std::thread::Thread) {
        if let Ok(mut threads) = self.shared.unpark.write() {
            threads.push(thread);
        }
    }

    /// Undoes [`Log::unpark_on_publish`] for the thread `id`.
    pub fn stop_unparking(&self, id: std::thread::ThreadId) {
        if let Ok(mut threads) = self.shared.unpark.write() {
            threads.retain(|t| t.id() != id);
        }
    }

    /// The log's identity: a random number chosen when the log was created and written
    /// into the header of each of its segments. State derived from the log (projection
    /// checkpoints, import positions) records it to tell whether it belongs to this log.
    pub fn identity(&self) -> u128 {
        self.shared.identity
    }

    /// Damage found in sealed segments since the log opened (by the background scrub
    /// that verifies every frame of the segments recovery loaded from their idx files,
    /// or by a read). Reads of the damaged records fail with [`LogError::Corrupt`].
    pub fn damage(&self) -> Vec<LogError> {
        self.shared
            .damage
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default()
    }

    /// Whether the background scrub of sealed segments has finished.
    pub fn scrubbed(&self) -> bool {
        scrub::finished(&self.shared)
    }

    /// The error that poisoned the log, if any.
    pub fn poisoned(&self) -> Option<String> {
        self.shared.poison.lock().ok().and_then(|p| p.clone())
    }

    /// The last version of a stream, `None` when it has no events.
    pub fn stream_version(&self, stream: &str) -> Option<u64> {
        let index = self.shared.index.read().ok()?;
        index
            .streams
            .get(stream)
            .and_then(|p| (p.len() as u64).checked_sub(1))
    }

    /// Reads up to `max` records from position `from`.
    ///
    /// # Errors
    /// I/O errors, or [`LogError::Corrupt`] if a record no longer verifies.
    pub fn read(&self, from: u64, max: usize) -> Result<Vec<Record>, LogError> {
        let index = self.shared.index.read().map_err(lock_poisoned)?;
        let read = read_index(&index, from, max);
        drop(index);
        if let Err(damage @ LogError::Corrupt { .. }) = &read
            && note_damage(&self.shared, damage)
        {
            tracing::error!(error = %damage, "a log read met a record that does not verify");
        }
        read
    }

    /// Reads up to `max` records from position `from` as one chunk of frames that
    /// borrows each record instead of copying it (see [`Frames`]). Where a record
    /// does not verify, the chunk ends before it and the damage comes with it (and is
    /// kept for [`Log::damage`] like a failed [`Log::read`]).
    ///
    /// # Errors
    /// I/O errors; a poisoned lock.
    pub fn read_frames(
        &self,
        from: u64,
        max: usize,
    ) -> Result<(Frames, Option<LogError>), LogError> {
        let index = self.shared.index.read().map_err(lock_poisoned)?;
        let read = read_frames(&index, from, max);
        drop(index);
        if let Ok((_, Some(damage))) = &read
            && note_damage(&self.shared, damage)
        {
            tracing::error!(error = %damage, "a log read met a record that does not verify");
        }
        read
    }

    /// Reads up to `max` records of one stream, from stream version `from_version`.
    ///
    /// # Errors
    /// As [`Log::read`].
    pub fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<Record>, LogError> {
        let positions: Vec<u64> = {
            let index = self.shared.index.read().map_err(lock_poisoned)?;
            index
                .streams
                .get(stream)
                .map(|p| p.range(usize::try_from(from_version).unwrap_or(usize::MAX), max))
                .unwrap_or_default()
        };
        let mut out = Vec::with_capacity(positions.len());
        for position in positions {
            out.extend(self.read(position, 1)?);
        }
        Ok(out)
    }

    /// Stops the writer after the requests already queued; waits for it.
    pub fn close(self) {
        let writer = self.writer.clone();
        drop(self);
        if let Ok(mut guard) = writer.lock() {
            // Only the last clone actually ends the thread (its queue closes then).
            if Arc::strong_count(&writer) == 1
                && let Some(handle) = guard.take()
            {
                let _ = handle.join();
            }
        }
    }
}

/// Reads up to `max` records from position `from` of the published log.
fn read_index(index: &Index, from: u64, max: usize) -> Result<Vec<Record>, LogError> {
    let (frames, damage) = read_frames(index, from, max)?;
    if let Some(damage) = damage {
        return Err(damage);
    }
    frames.to_records()
}

/// Reads up to `max` records from `from` as one chunk of frames, verifying each; at
/// a frame that does not verify, returns the ones before it and the damage.
///
/// # Errors
/// I/O errors reading a segment.
fn read_frames(
    index: &Index,
    from: u64,
    max: usize,
) -> Result<(Frames, Option<LogError>), LogError> {
    let end = index.head.min(from.saturating_add(max as u64));
    let mut frames = Frames::starting_at(from);
    let mut position = from;
    while position < end {
        let Some(segment) = segment_for(&index.segments, position) else {
            break;
        };
        let local = (position - segment.first) as usize;
        let last_local = ((end - segment.first) as usize).min(segment.offsets.len());
        let Some(start_byte) = segment.offsets.get(local) else {
            let damage = LogError::Corrupt {
                segment: segment_name(segment.first),
                offset: 0,
                reason: format!("no offset for position {position}"),
            };
            return Ok((frames, Some(damage)));
        };
        let end_byte = segment.offsets.get(last_local).unwrap_or(segment.len);
        let mut bytes = vec![0; end_byte.saturating_sub(start_byte) as usize];
        segment.file.read_exact_at(&mut bytes, start_byte)?;
        if let Err((at, e)) = frames.push_verified(bytes) {
            let damage = LogError::Corrupt {
                segment: segment_name(segment.first),
                offset: start_byte + at as u64,
                reason: format!("{e:?} record on read"),
            };
            return Ok((frames, Some(damage)));
        }
        position = segment.first + last_local as u64;
    }
    Ok((frames, None))
}

/// Keeps `damage` for [`Log::damage`] unless the same segment and offset are already
/// there; whether it was new.
fn note_damage(shared: &Shared, damage: &LogError) -> bool {
    let place = |e: &LogError| match e {
        LogError::Corrupt {
            segment, offset, ..
        } => Some((segment.clone(), *offset)),
        _ => None,
    };
    let Ok(mut found) = shared.damage.lock() else {
        return false;
    };
    let here = place(damage);
    if found.iter().any(|e| place(e) == here) {
        return false;
    }
    found.push(damage.clone());
    true
}

fn segment_for(segments: &[Segment], position: u64) -> Option<&Segment> {
    let i = segments
        .partition_point(|s| s.first <= position)
        .checked_sub(1)?;
    let segment = &segments[i];
    (position < segment.first + segment.offsets.len() as u64).then_some(segment)
}

/// What recovery hands to [`Log::open`].
struct Recovered {
    index: Index,
    recovery: Recovery,
    /// The active segment, opened for appending.
    active: File,
    /// The active segment's own index, which the writer extends and persists when it
    /// seals the segment.
    seal: SegmentIndex,
    /// Every event id in the log.
    ids: ids::IdIndex,
    /// Idx files to write for sealed segments that had to be scanned.
    missing: Vec<(u64, Vec<u8>)>,
    /// The log's identity.
    identity: u128,
    /// Sealed segments loaded from their idx, for the background scrub to verify.
    to_scrub: Vec<scrub::Expect>,
}

/// A fresh random log identity (never 0).
fn new_identity() -> Result<u128, LogError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| LogError::Io(format!("no randomness for the log identity: {e}")))?;
    Ok(u128::from_le_bytes(bytes).max(1))
}

/// Creates the segment whose first record is `first`: written under a temporary name
/// with its header, synced, renamed into place and the directory synced, so a segment
/// file always has a whole header. Returns its append handle.
fn create_segment(dir: &Path, identity: u128, first: u64) -> std::io::Result<File> {
    use std::io::Write;
    let path = dir.join(segment_name(first));
    let tmp = dir.join(format!("{}.tmp", segment_name(first)));
    let mut file = private_file(&tmp)?;
    file.write_all(&format::encode_segment_header(identity, first))?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()?;
    // Not in append mode: the writer writes at offsets, into zeroed space.
    std::fs::OpenOptions::new().write(true).open(&path)
}

/// Creates a directory (and its missing parents) accessible to its owner only, as a
/// database's files must be: events are often personal data. An existing directory
/// is left as it is.
///
/// # Errors
/// I/O errors.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Takes the exclusive lock of a log directory (`LOCK`, an advisory file lock the
/// kernel drops when the process ends, crash or not), so that no second process opens
/// the same log: recovery would cut the running writer's group in flight as a torn
/// tail, and two writers would interleave. `datamesh repair` takes it too.
///
/// # Errors
/// [`LogError::Locked`] when another process holds it; I/O errors.
pub(crate) fn lock_dir(dir: &Path) -> Result<File, LogError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(LogError::Locked(dir.display().to_string())),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

/// Creates (truncating) a file readable and writable by its owner only.
pub(crate) fn private_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// Reads and checks the header of the segment `name` (first record `first`): its
/// format, its first position, and (when `identity` is known) that it belongs to
/// this log.
fn check_header(
    file: &File,
    name: &str,
    first: u64,
    identity: Option<u128>,
) -> Result<format::SegmentHeader, LogError> {
    let mut bytes = [0u8; format::SEGMENT_HEADER];
    let len = file.metadata()?.len();
    let header_error = |reason: String| LogError::Header {
        segment: name.to_owned(),
        reason,
    };
    if len < format::SEGMENT_HEADER as u64 {
        return Err(header_error(
            format::HeaderError::Short(len as usize).to_string(),
        ));
    }
    file.read_exact_at(&mut bytes, 0)?;
    let header = format::decode_segment_header(&bytes).map_err(|e| header_error(e.to_string()))?;
    if header.first != first {
        return Err(header_error(format!(
            "its header says it starts at position {}, its name says {first}",
            header.first
        )));
    }
    if let Some(identity) = identity
        && header.identity != identity
    {
        return Err(header_error(format!(
            "belongs to another log (identity {:032x}, this log is {identity:032x}): segments of two logs are mixed in one directory",
            header.identity
        )));
    }
    Ok(header)
}

/// The segment files of `dir`, sorted by first position; removes what a crash left
/// half-written (idx and segment temporaries).
fn segment_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LogError> {
    let mut names: Vec<(u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(".idx.tmp") || name.ends_with(".seg.tmp") {
            // Left by a crash while writing an idx or creating a segment.
            let _ = std::fs::remove_file(&path);
        } else if let Some(first) = name.strip_suffix(".seg").and_then(|s| s.parse().ok()) {
            names.push((first, path));
        }
    }
    names.sort();
    Ok(names)
}

/// The segment files of the log in `dir` in position order, each with its idx file
/// when it has one, listed without changing anything (for a backup of a running log).
///
/// # Errors
/// I/O errors; `dir` is not a log directory.
pub(crate) fn segment_files_with_idx(
    dir: &Path,
) -> Result<Vec<(PathBuf, Option<PathBuf>)>, LogError> {
    Ok(repair::segment_files_readonly(dir)?
        .into_iter()
        .map(|(first, path)| {
            let idx = dir.join(index::idx_name(first));
            (path, idx.is_file().then_some(idx))
        })
        .collect())
}

/// Loads the idx of every sealed segment that has a valid one, scans the others and the
/// last segment, cutting a torn tail of the last one. The last segment is scanned on a
/// second thread while the sealed ones load. Damage before the end of the last
/// segment that intact records prove is not a torn write refuses the open
/// ([`LogError::Damaged`]).
fn recover(dir: &Path) -> Result<Recovered, LogError> {
    let mut names = segment_files(dir)?;
    let identity = match names.first() {
        Some((first, path)) => {
            check_header(&File::open(path)?, &segment_name(*first), *first, None)?.identity
        }
        None => new_identity()?,
    };
    let Some((last_first, last_path)) = names.pop() else {
        return create_log(dir, identity);
    };
    let scan_last = || -> Result<(File, index::Scan, u32), LogError> {
        let file = File::open(&last_path)?;
        let header = check_header(&file, &segment_name(last_first), last_first, Some(identity))?;
        let scan = index::scan(last_first, &file)?;
        Ok((file, scan, header.version))
    };
    std::thread::scope(|scope| {
        let last_scan = std::thread::Builder::new()
            .name("datamesh-log-recover".to_owned())
            .spawn_scoped(scope, scan_last)
            .ok();
        let sealed = recover_sealed(dir, &names, identity);
        let last = match last_scan {
            Some(thread) => thread
                .join()
                .map_err(|_| LogError::Io("the recovery thread panicked".to_owned()))?,
            None => scan_last(),
        };
        let (sealed, head) = sealed?;
        let (file, scan, version) = last?;
        if last_first != head {
            return Err(LogError::Corrupt {
                segment: segment_name(last_first),
                offset: 0,
                reason: format!("starts at position {last_first}, expected {head}"),
            });
        }
        let (active, truncated_bytes) =
            keep_whole_groups(&last_path, last_first, &file, scan, version)?;
        let recovery = Recovery {
            segments: names.len() + 1,
            records: last_first + active.offsets.len() as u64,
            scanned_segments: 1,
            truncated_bytes,
            ..Recovery::default()
        };
        let active_file = std::fs::OpenOptions::new().write(true).open(&last_path)?;
        Ok(assemble(
            sealed,
            (last_first, file, active, active_file),
            recovery,
            identity,
        ))
    })
}

/// A new log in an empty `dir`: one empty segment from position 0.
fn create_log(dir: &Path, identity: u128) -> Result<Recovered, LogError> {
    let active = create_segment(dir, identity, 0)?;
    let path = dir.join(segment_name(0));
    let index = Index {
        segments: vec![Segment {
            first: 0,
            file: File::open(&path)?,
            offsets: Offsets::Owned(Vec::new()),
            len: format::SEGMENT_HEADER as u64,
        }],
        ..Index::default()
    };
    let recovery = Recovery {
        segments: 1,
        scanned_segments: 1,
        created: true,
        ..Recovery::default()
    };
    Ok(Recovered {
        index,
        recovery,
        active,
        seal: SegmentIndex::new(0),
        ids: ids::IdIndex::default(),
        missing: Vec::new(),
        identity,
        to_scrub: Vec::new(),
    })
}

/// Keeps the last segment's whole groups: a torn tail (a group the crash interrupted,
/// never acknowledged) is cut from the file; zeros after the last whole group are the
/// writer's zeroed space and stay. Returns the segment's index as kept and how many
/// bytes were cut.
///
/// # Errors
/// [`LogError::Damaged`] when intact records after the bad bytes prove they are damage
/// rather than a torn write; I/O errors.
fn keep_whole_groups(
    path: &Path,
    first: u64,
    file: &File,
    scan: index::Scan,
    version: u32,
) -> Result<(SegmentIndex, u64), LogError> {
    let name = segment_name(first);
    let index::Scan {
        segment: mut active,
        stopped,
        file_len,
        committed,
    } = scan;
    // Whole groups only: in format 2 every group ends with a marked frame, so what
    // follows the last one is a group the crash interrupted, even when its first
    // frames are intact. (A format-1 segment this build has written to has group
    // ends from then on; one it has not keeps format 1's rule: cut at the first
    // bad frame.)
    let whole = match committed {
        Some(end) => Some(end),
        None if version >= 2 => Some((format::SEGMENT_HEADER as u64, 0)),
        None => None,
    };
    let partial = whole.filter(|&(len, _)| len < active.len);
    let position = first + active.offsets.len() as u64;
    // Zeros after the last whole group are the writer's zeroed space (see
    // `writer`), not a torn write: kept for the writer to go on into.
    let mut free = false;
    if stopped.is_some() {
        let at = active.len;
        let rest_len = usize::try_from(file_len - at)
            .map_err(|_| LogError::Io("segment too large".to_owned()))?;
        let mut rest = vec![0u8; rest_len];
        file.read_exact_at(&mut rest, at)?;
        free = partial.is_none() && rest.iter().all(|&b| b == 0);
        if let Some(found) = index::intact_after(&rest, at, position)
            && found.proves_damage
        {
            return Err(LogError::Damaged {
                segment: name,
                offset: at,
                position,
                intact: found.records,
                intact_offset: found.offset,
                intact_position: found.position,
            });
        }
    }
    if (stopped.is_some() && !free) || partial.is_some() {
        let (keep, kept) = partial.unwrap_or((active.len, active.offsets.len()));
        let reason = stopped.as_deref().unwrap_or("the group has no last frame");
        tracing::warn!(segment = %name, offset = keep, bytes = file_len - keep, reason, cut_records_of_the_last_group = active.offsets.len() - kept, "cutting the torn tail of the log (a write the crash interrupted; it was never acknowledged)");
        let writable = std::fs::OpenOptions::new().write(true).open(path)?;
        writable.set_len(keep)?;
        writable.sync_all()?;
        if partial.is_some() {
            active = index::scan(first, file)?.segment;
        }
    }
    let truncated = if free {
        0
    } else {
        file_len.saturating_sub(active.len)
    };
    Ok((active, truncated))
}

/// Builds the log's in-memory index from the sealed segments and the active one (its
/// first position, read file, index and file opened for writing): offsets, streams,
/// ids, the idx files to write and the segments to scrub.
fn assemble(
    sealed: Vec<SealedSegment>,
    (last_first, file, active, active_file): (u64, File, SegmentIndex, File),
    mut recovery: Recovery,
    identity: u128,
) -> Recovered {
    // The indexes are built only now: allocating them while the scan runs makes the
    // two threads contend for the address space lock (measured: slower overall).
    let mut lists = Vec::with_capacity(sealed.len());
    let mut ids = 0;
    let mut last_time = active.max_time.max(0);
    let mut missing = Vec::new();
    let mut to_scrub = Vec::new();
    for segment in &sealed {
        match &segment.how {
            Sealed::Indexed(idx) => {
                recovery.indexed_segments += 1;
                lists.push(idx.stream_list());
                ids += idx.ids().len();
                last_time = last_time.max(idx.max_time);
                to_scrub.push(scrub::Expect {
                    first: segment.first,
                    records: idx.count() as u64,
                    len: idx.len,
                });
            }
            Sealed::Scanned(scanned) => {
                recovery.scanned_segments += 1;
                lists.push(scanned.stream_list());
                ids += scanned.ids.len();
                last_time = last_time.max(scanned.max_time);
                missing.extend(index::encode(scanned).map(|bytes| (segment.first, bytes)));
            }
        }
    }
    let streams = index::merge_streams(&lists, &active.stream_list());
    drop(lists);
    let mut id_index = ids::IdIndex::with_capacity(ids + active.ids.len());
    let mut segments = Vec::with_capacity(sealed.len() + 1);
    for SealedSegment { first, file, how } in sealed {
        let (offsets, len) = match how {
            Sealed::Indexed(idx) => {
                for (id, position) in idx.ids() {
                    id_index.insert(id, position);
                }
                let len = idx.len;
                (Offsets::Idx(idx), len)
            }
            Sealed::Scanned(scanned) => {
                for (id, position) in scanned.ids.iter() {
                    id_index.insert(id, position);
                }
                (Offsets::Owned(scanned.offsets), scanned.len)
            }
        };
        segments.push(Segment {
            first,
            file,
            offsets,
            len,
        });
    }
    for (id, position) in active.ids.iter() {
        id_index.insert(id, position);
    }
    segments.push(Segment {
        first: last_first,
        file,
        offsets: Offsets::Owned(active.offsets.clone()),
        len: active.len,
    });
    let index = Index {
        segments,
        streams,
        head: recovery.records,
        last_time,
    };
    Recovered {
        index,
        recovery,
        active: active_file,
        seal: active,
        ids: id_index,
        missing,
        identity,
        to_scrub,
    }
}

/// A sealed segment found by recovery.
struct SealedSegment {
    first: u64,
    file: File,
    how: Sealed,
}

/// How a sealed segment was recovered.
enum Sealed {
    /// From its idx.
    Indexed(Arc<index::IdxFile>),
    /// By a scan (it had no usable idx).
    Scanned(SegmentIndex),
}

/// Loads or scans the sealed segments, in order; returns them with the position after
/// the last one.
fn recover_sealed(
    dir: &Path,
    names: &[(u64, PathBuf)],
    identity: u128,
) -> Result<(Vec<SealedSegment>, u64), LogError> {
    let mut sealed = Vec::with_capacity(names.len());
    let mut head = 0;
    for (first, path) in names {
        let name = segment_name(*first);
        if *first != head {
            return Err(LogError::Corrupt {
                segment: name,
                offset: 0,
                reason: format!("starts at position {first}, expected {head}"),
            });
        }
        let file = File::open(path)?;
        check_header(&file, &name, *first, Some(identity))?;
        let how = match index::read(dir, *first, &file) {
            Ok(idx) => {
                head += idx.count() as u64;
                Sealed::Indexed(idx)
            }
            Err(reason) => {
                tracing::info!(segment = %name, %reason, "no usable idx; scanning the segment");
                let scan = index::scan(*first, &file)?;
                if let Some(reason) = scan.stopped {
                    return Err(LogError::Corrupt {
                        segment: name,
                        offset: scan.segment.len,
                        reason: format!(
                            "{reason} in a sealed segment (every record of a sealed segment was synced and acknowledged, so this is damage, not a torn write); the node will not start rather than serve a log with a hole. Copy the data directory first, then `datamesh repair --data <DIR>` reports what a repair would keep and drop"
                        ),
                    });
                }
                head += scan.segment.offsets.len() as u64;
                Sealed::Scanned(scan.segment)
            }
        };
        sealed.push(SealedSegment {
            first: *first,
            file,
            how,
        });
    }
    Ok((sealed, head))
}

#[cfg(test)]
mod damage_tests;
#[cfg(test)]
mod tests;
