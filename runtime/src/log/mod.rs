//! The log: append-only, durable, totally ordered events in segment files.
//!
//! One writer thread owns the files and group-commits: it takes every append request
//! waiting in its queue, validates each one (expected stream versions, idempotency by
//! event id) against the log plus the requests before it in the same group, writes all
//! accepted events with one `write` and one `fdatasync`, and only then acknowledges
//! them and makes them visible to readers. Recovery on open verifies every frame and
//! cuts a torn or corrupt tail of the last segment.
//!
//! Invariants: positions are dense and start at 0; a reader never sees an event that is
//! not on disk; after an I/O error on write or sync the log is poisoned and refuses
//! every later append (the bytes on disk past the last good sync are unknown, so
//! appending after them could leave a hole); a restart recovers.

mod format;
mod writer;

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

pub use format::{FrameError, Record};
use tokio::sync::{oneshot, watch};

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
    /// The same id twice in one request.
    #[error("event id `{0}` appears twice in one request")]
    DuplicateIdInRequest(String),
    /// The log refuses writes after an I/O error.
    #[error("the log refuses writes after an I/O error ({0}); restart the node to recover")]
    Poisoned(String),
    /// An I/O error.
    #[error("log I/O error: {0}")]
    Io(String),
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
    offsets: Vec<u64>,
    /// Bytes of durable records.
    len: u64,
}

/// What readers and the writer share: positions to bytes, and the stream and id
/// indexes, covering exactly the durable records.
#[derive(Debug, Default)]
struct Index {
    segments: Vec<Segment>,
    streams: HashMap<String, Vec<u64>>,
    ids: HashMap<String, u64>,
    head: u64,
    last_time: i64,
}

#[derive(Debug)]
struct Shared {
    index: RwLock<Index>,
    head: watch::Sender<u64>,
    poison: Mutex<Option<String>>,
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
    /// Opens (or creates) the log in `config.dir`, verifying every record and cutting a
    /// torn tail; starts the writer thread.
    ///
    /// # Errors
    /// I/O errors, and [`LogError::Corrupt`] when a segment other than the last is
    /// damaged (that is not a torn write, and cutting it would lose acknowledged events).
    pub fn open(config: LogConfig) -> Result<(Log, Recovery), LogError> {
        std::fs::create_dir_all(&config.dir)?;
        let (index, recovery, active) = recover(&config.dir)?;
        let (head_tx, _) = watch::channel(index.head);
        let shared = Arc::new(Shared {
            index: RwLock::new(index),
            head: head_tx,
            poison: Mutex::new(None),
        });
        let (jobs, rx) = std::sync::mpsc::channel();
        let writer_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("datamesh-log-writer".to_owned())
            .spawn(move || writer::run(&config, &writer_shared, active, &rx))?;
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
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job {
                events,
                expected,
                reply,
            })
            .map_err(|_| LogError::Closed)?;
        rx.await.map_err(|_| LogError::Closed)?
    }

    /// One past the last durable position.
    pub fn head(&self) -> u64 {
        *self.shared.head.borrow()
    }

    /// Notified whenever the head moves.
    pub fn watch_head(&self) -> watch::Receiver<u64> {
        self.shared.head.subscribe()
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
        let end = index.head.min(from.saturating_add(max as u64));
        let mut out = Vec::with_capacity(end.saturating_sub(from) as usize);
        let mut position = from;
        while position < end {
            let Some(segment) = segment_for(&index.segments, position) else {
                break;
            };
            let local = (position - segment.first) as usize;
            let last_local = ((end - segment.first) as usize).min(segment.offsets.len());
            let start_byte = segment.offsets[local];
            let end_byte = segment
                .offsets
                .get(last_local)
                .copied()
                .unwrap_or(segment.len);
            let mut bytes = vec![0; (end_byte - start_byte) as usize];
            segment.file.read_exact_at(&mut bytes, start_byte)?;
            let mut at = 0;
            while at < bytes.len() {
                let (record, used) =
                    format::decode_frame(&bytes[at..]).map_err(|e| LogError::Corrupt {
                        segment: segment_name(segment.first),
                        offset: start_byte + at as u64,
                        reason: format!("{e:?} record on read"),
                    })?;
                at += used;
                out.push(record);
            }
            position = segment.first + last_local as u64;
        }
        Ok(out)
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
                .map(|p| {
                    p.iter()
                        .skip(from_version as usize)
                        .take(max)
                        .copied()
                        .collect()
                })
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

fn segment_for(segments: &[Segment], position: u64) -> Option<&Segment> {
    let i = segments
        .partition_point(|s| s.first <= position)
        .checked_sub(1)?;
    let segment = &segments[i];
    (position < segment.first + segment.offsets.len() as u64).then_some(segment)
}

/// Scans every segment, cutting a torn tail of the last one.
fn recover(dir: &Path) -> Result<(Index, Recovery, File), LogError> {
    let mut names: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let stem = p.file_name()?.to_str()?.strip_suffix(".seg")?;
            Some((stem.parse().ok()?, p.clone()))
        })
        .collect();
    names.sort();
    if names.is_empty() {
        let path = dir.join(segment_name(0));
        File::create(&path)?.sync_all()?;
        File::open(dir)?.sync_all()?;
        names.push((0, path));
    }
    let mut index = Index::default();
    let mut recovery = Recovery {
        segments: names.len(),
        ..Recovery::default()
    };
    let count = names.len();
    for (n, (first, path)) in names.iter().enumerate() {
        let last = n + 1 == count;
        let name = segment_name(*first);
        if *first != index.head {
            return Err(LogError::Corrupt {
                segment: name,
                offset: 0,
                reason: format!("starts at position {first}, expected {}", index.head),
            });
        }
        let bytes = std::fs::read(path)?;
        let mut offsets = Vec::new();
        let mut at = 0usize;
        while at < bytes.len() {
            match format::decode_frame(&bytes[at..]) {
                Ok((record, used)) if record.position == index.head => {
                    offsets.push(at as u64);
                    index.last_time = index.last_time.max(record.time);
                    if !record.stream.is_empty() {
                        index
                            .streams
                            .entry(record.stream)
                            .or_default()
                            .push(record.position);
                    }
                    if !record.id.is_empty() {
                        index.ids.insert(record.id, record.position);
                    }
                    index.head += 1;
                    at += used;
                }
                outcome => {
                    let reason = match outcome {
                        Ok((record, _)) => format!(
                            "record has position {}, expected {}",
                            record.position, index.head
                        ),
                        Err(e) => format!("{e:?} frame"),
                    };
                    if !last {
                        return Err(LogError::Corrupt {
                            segment: name,
                            offset: at as u64,
                            reason,
                        });
                    }
                    let cut = (bytes.len() - at) as u64;
                    tracing::warn!(segment = %name, offset = at, bytes = cut, %reason, "cutting the torn tail of the log");
                    let file = std::fs::OpenOptions::new().write(true).open(path)?;
                    file.set_len(at as u64)?;
                    file.sync_all()?;
                    recovery.truncated_bytes = cut;
                    break;
                }
            }
        }
        recovery.records += offsets.len() as u64;
        index.segments.push(Segment {
            first: *first,
            file: File::open(path)?,
            offsets,
            len: at.min(bytes.len()) as u64,
        });
    }
    let active_path = names
        .last()
        .map(|(_, p)| p.clone())
        .unwrap_or_else(|| dir.join(segment_name(0)));
    let active = std::fs::OpenOptions::new().append(true).open(active_path)?;
    Ok((index, recovery, active))
}

#[cfg(test)]
mod tests;
