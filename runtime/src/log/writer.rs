//! The writer thread: group commit.
//!
//! The writer thread takes every append request waiting in its queue (a group),
//! validates each one against everything written before it (earlier groups, earlier
//! requests of the same group), encodes the accepted events, writes them to the active
//! segment with one `write`, makes them durable with one `fdatasync`, publishes them to
//! readers (index and head) and only then acknowledges them. Requests that arrive
//! while it syncs wait in the queue and form the next group, so one sync covers every
//! request that came during the previous one.
//!
//! Why one thread and not a pipeline. Until this version a second thread synced: the
//! writer handed it each written group and went on validating and writing the next
//! one while the sync ran. Measured side by side on the 2-core reference machine,
//! with the client on the same cores, doing it all on one thread was faster: W1
//! (1,000-event requests) 20-45% more events/s with a third of the p99 latency, W2 (8
//! single-event clients) the same to 8% more. The hand-off cost a wake-up and a
//! context switch per group, and overlapping a `write` (a copy into the page cache)
//! with a sync only helps when a core is idle.
//!
//! Why no commit delay. With `n` clients each sending its next request once the last
//! is acknowledged, two groups alternate and each carries about half of them (W2: 3.7
//! events per `fdatasync` with 8 clients). Tried: after taking what is queued, wait
//! (at most half of a recent group's write-and-sync time) for the previous group's
//! requests to come back, so one sync carries them all. Events per sync rose to 4.6-4.9
//! but syncs per second halved (the clients, on the same 2 cores, come back more
//! slowly than a sync takes): W2 fell 40% side by side. A commit delay pays only where
//! clients answer faster than the disk syncs.
//!
//! Sealing. The writer also keeps the active segment's own index (offsets, streams,
//! ids, max time) as it writes, from data it already has. When a group would overfill
//! the active segment it syncs that segment, creates the next one and writes the group
//! there; once that group is synced and published (so every record of the sealed
//! segment is acknowledged), it passes the sealed segment's index to a second thread,
//! which encodes and writes the `.idx` file (and the idx files recovery found
//! missing). Doing the encoding, the write and its two syncs there keeps them off the
//! append path: the writer pays one extra `fdatasync` per segment (at the roll) and one
//! stream lookup by name per record (streams go by internal id after that); an idx
//! failure is only logged, since recovery scans a segment without one.
//!
//! Pre-zeroed space. The active segment is extended ahead of the writer with zeros
//! ([`ZERO_AHEAD`] bytes at a time, never past the segment's size), and groups are
//! written into that space at their offset. An `fdatasync` of a write that does not
//! change the file's size flushes only the data; one that grows the file also commits
//! the filesystem's journal for the new size. Measured on the 2-core reference
//! machine: about 30% more syncs per second, hence more events per second for
//! single-event appends (W2). The zeros cost one write and one size change per
//! [`ZERO_AHEAD`] bytes; a sealed segment is cut to its records before the next one
//! is created; recovery treats an all-zero tail after the last whole group as free
//! space (zeros never decode as a frame: a frame's checksum covers its length word).
//!
//! Invariants: a request is acknowledged only after its bytes are synced; records
//! become visible to readers in position order, exactly when they are durable;
//! validation orders requests exactly as if they had been committed one by one; after
//! an I/O error (write or sync) the log is poisoned and every later request fails; a
//! segment is sealed only once synced whole, and an idx is written only for a sealed
//! segment whose records are all acknowledged.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};

use super::format::{Record, SEGMENT_HEADER, encode_frame, mark_group_end, mark_group_start};
use super::ids::{IdIndex, IdList};
use super::index::{self, Offsets, SegmentIndex, StreamPositions};
use super::{Appended, Expected, Job, LogConfig, LogError, Segment, Shared, segment_name};

/// Largest group written at once.
const MAX_GROUP_BYTES: usize = 16 << 20;

/// How far past a group the active segment is zeroed when the writer runs out of
/// zeroed space.
#[cfg(not(test))]
const ZERO_AHEAD: u64 = 4 << 20;
#[cfg(test)]
const ZERO_AHEAD: u64 = 4096;

/// A request accepted into a group, waiting for its sync.
struct Accepted {
    reply: tokio::sync::oneshot::Sender<Result<Appended, LogError>>,
    positions: Vec<u64>,
    deduplicated: bool,
}

/// A group written to its segment, to sync and publish.
struct Written {
    /// First position of the segment the bytes went to.
    segment_first: u64,
    /// A read handle when this group starts a new segment.
    new_segment: Option<File>,
    /// Byte offset of each record in the segment.
    offsets: Vec<u64>,
    /// Segment length after this group.
    segment_len: u64,
    /// (stream id, position) of the records, in order.
    streams: Vec<(u32, u64)>,
    /// Streams this group writes first, in the order of their ids (the ids after the
    /// last one published).
    new_streams: Vec<Arc<str>>,
    /// Head after this group, and its append time.
    head: u64,
    time: i64,
    accepted: Vec<Accepted>,
    /// The index of the segment this group's roll sealed, to persist once this group is
    /// durable.
    sealed: Option<SegmentIndex>,
}

/// Work for the idx thread.
enum IdxJob {
    /// A sealed segment whose records are all acknowledged.
    Sealed(SegmentIndex),
    /// Encoded idx of a sealed segment recovery had to scan.
    Encoded(u64, Vec<u8>),
}

/// What the writer knows of every stream and id in the log, the group being written
/// included.
///
/// `streams` numbers every stream as the published [`index::StreamIndex`] does, plus
/// the streams of the group being written, and counts each one's events: the count is
/// the version the stream's next event gets. One lookup by name per record finds both;
/// everything downstream (the segment's index, the published index) goes by id.
///
/// `ids` holds every client id written: only the writer looks ids up, so it alone
/// keeps them.
struct Known {
    streams: Streams,
    ids: IdIndex,
}

/// Every stream by name and by id, with its event count.
struct Streams {
    ids: super::Map<Arc<str>, u32>,
    /// By id.
    names: Vec<Arc<str>>,
    counts: Vec<u64>,
}

impl Streams {
    fn new(index: &index::StreamIndex) -> Streams {
        let mut streams = Streams {
            ids: super::Map::with_capacity_and_hasher(index.len(), Default::default()),
            names: Vec::with_capacity(index.len()),
            counts: Vec::with_capacity(index.len()),
        };
        for (id, (name, count)) in (0u32..).zip(index.counts()) {
            streams.ids.insert(name.clone(), id);
            streams.names.push(name.clone());
            streams.counts.push(count);
        }
        streams
    }

    /// Events in `stream`, published or not.
    fn count(&self, stream: &str) -> u64 {
        self.ids
            .get(stream)
            .and_then(|&id| self.counts.get(id as usize))
            .copied()
            .unwrap_or(0)
    }

    /// Counts one more event of `stream`: its id and stream version. A stream seen for
    /// the first time gets the next id and its name goes to `new`. `None` only when
    /// 2^32 streams have ids.
    fn add(&mut self, stream: &str, new: &mut Vec<Arc<str>>) -> Option<(u32, u64)> {
        if let Some(&id) = self.ids.get(stream) {
            let count = self.counts.get_mut(id as usize)?;
            *count += 1;
            return Some((id, *count - 1));
        }
        let id = u32::try_from(self.names.len()).ok()?;
        let name: Arc<str> = Arc::from(stream);
        self.ids.insert(name.clone(), id);
        self.names.push(name.clone());
        self.counts.push(1);
        new.push(name);
        Some((id, 0))
    }
}

/// The writer's own view of the active segment.
struct Active {
    file: File,
    first: u64,
    len: u64,
    /// Every byte from `len` to here is zero (the file may be longer, by zeros).
    zeroed: u64,
    /// The last attempt to zero space ahead failed (warned once until one works).
    unzeroed: bool,
    /// Index of the records written to it so far, but for its streams, which are kept
    /// by id in `streams` until the segment is sealed.
    seal: SegmentIndex,
    streams: super::Map<u32, Vec<u64>>,
}

impl Active {
    /// The finished index of this segment, its streams by name.
    fn sealed(mut self, names: &[Arc<str>]) -> SegmentIndex {
        self.seal.streams = self
            .streams
            .into_iter()
            .filter_map(|(id, positions)| Some((names.get(id as usize)?.to_string(), positions)))
            .collect();
        self.seal
    }
}

/// What recovery hands to the writer.
pub(super) struct Recovered {
    /// The active segment, opened for appending.
    pub file: File,
    /// The active segment's index so far.
    pub seal: SegmentIndex,
    /// Every event id in the log.
    pub ids: IdIndex,
    /// Idx files to write for sealed segments that had to be scanned.
    pub missing: Vec<(u64, Vec<u8>)>,
}

pub(super) fn run(
    config: &LogConfig,
    shared: &Arc<Shared>,
    recovered: Recovered,
    jobs: &Receiver<Job>,
) {
    let Recovered {
        file,
        seal,
        ids,
        missing,
    } = recovered;
    let (to_idx, idx_jobs) = std::sync::mpsc::channel::<IdxJob>();
    let idx_shared = shared.clone();
    let dir = config.dir.clone();
    let idx_thread = std::thread::Builder::new()
        .name("datamesh-log-idx".to_owned())
        .spawn(move || idx_loop(&dir, &idx_shared, &idx_jobs))
        .inspect_err(|e| tracing::warn!(error = %e, "cannot start the log idx thread; sealed segments will be scanned on open"))
        .ok();
    for (first, bytes) in missing {
        let _ = to_idx.send(IdxJob::Encoded(first, bytes));
    }
    let (mut next, mut last_time, streams) = match shared.index.read() {
        Ok(index) => (index.head, index.last_time, Streams::new(&index.streams)),
        Err(_) => (0, 0, Streams::new(&index::StreamIndex::default())),
    };
    let mut seal = seal;
    // The active segment's streams are all in the index: recovery merged them.
    let active_streams = std::mem::take(&mut seal.streams)
        .into_iter()
        .filter_map(|(name, positions)| Some((*streams.ids.get(name.as_str())?, positions)))
        .collect();
    // Recovery leaves only zeros past the last record (free space) or cuts the file.
    let zeroed = file.metadata().map_or(seal.len, |m| m.len().max(seal.len));
    let mut active = Active {
        file,
        first: seal.first,
        len: seal.len,
        zeroed,
        unzeroed: false,
        seal,
        streams: active_streams,
    };
    let mut known = Known { streams, ids };
    // The group's bytes: kept from one group to the next, so a large group does not
    // fault in fresh pages every time.
    let mut buffer = Vec::new();
    while let Ok(first_job) = jobs.recv() {
        let mut group = vec![first_job];
        let mut size: usize = group[0].events.iter().map(|e| e.payload.len() + 64).sum();
        while size < MAX_GROUP_BYTES {
            match jobs.try_recv() {
                Ok(job) => {
                    size += job
                        .events
                        .iter()
                        .map(|e| e.payload.len() + 64)
                        .sum::<usize>();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        write_group(
            config,
            shared,
            &mut active,
            &mut known,
            &mut next,
            &mut last_time,
            group,
            &to_idx,
            &mut buffer,
        );
    }
    // A log closed in order is exactly its records long (a copy of it holds nothing
    // but them); only a crash leaves zeroed space for recovery to find.
    let longer = active
        .file
        .metadata()
        .map_or(active.zeroed > active.len, |m| m.len() > active.len);
    if longer && poisoned(shared).is_none() {
        let cut = active
            .file
            .set_len(active.len)
            .and_then(|()| active.file.sync_data());
        if let Err(e) = cut {
            tracing::warn!(error = %e, "cannot cut the zeroed space of the active segment at close; the next open keeps it as free space");
        }
    }
    drop(to_idx);
    if let Some(idx_thread) = idx_thread {
        let _ = idx_thread.join();
    }
}

/// Writes idx files, one after the other.
fn idx_loop(dir: &std::path::Path, shared: &Shared, jobs: &Receiver<IdxJob>) {
    while let Ok(job) = jobs.recv() {
        let (first, bytes) = match job {
            IdxJob::Sealed(segment) => {
                if poisoned(shared).is_some() {
                    continue;
                }
                let Some(bytes) = index::encode(&segment) else {
                    tracing::debug!(first = segment.first, "segment too large for an idx");
                    continue;
                };
                (segment.first, bytes)
            }
            IdxJob::Encoded(first, bytes) => (first, bytes),
        };
        if let Err(e) = index::write(dir, first, &bytes) {
            tracing::warn!(segment = %segment_name(first), error = %e, "cannot write the segment idx; the segment will be scanned on open");
        }
    }
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn poisoned(shared: &Shared) -> Option<String> {
    shared.poison.lock().ok().and_then(|p| p.clone())
}

fn poison(shared: &Shared, reason: &str) {
    tracing::error!(%reason, "log I/O failed; refusing further writes");
    if let Ok(mut p) = shared.poison.lock()
        && p.is_none()
    {
        *p = Some(reason.to_owned());
    }
}

fn fail_all(accepted: Vec<Accepted>, reason: &str) {
    for a in accepted {
        let _ = a.reply.send(Err(LogError::Poisoned(reason.to_owned())));
    }
}

/// Writes one group: validates and encodes its requests ([`encode_group`]), writes
/// them at the end of the active segment, rolling to a new one first when they would
/// overfill it ([`place_group`]), makes them durable with one `fdatasync`, publishes
/// them to readers and only then answers each request. An I/O error poisons the log
/// and fails every request of the group.
#[allow(clippy::too_many_arguments)]
fn write_group(
    config: &LogConfig,
    shared: &Shared,
    active: &mut Active,
    known: &mut Known,
    next: &mut u64,
    last_time: &mut i64,
    group: Vec<Job>,
    to_idx: &Sender<IdxJob>,
    buffer: &mut Vec<u8>,
) {
    if let Some(reason) = poisoned(shared) {
        for job in group {
            let _ = job.reply.send(Err(LogError::Poisoned(reason.clone())));
        }
        return;
    }
    let time = now_micros().max(*last_time);
    buffer.clear();
    let Some(encoded) = encode_group(shared, known, next, time, group, buffer) else {
        return;
    };
    let Encoded {
        relative,
        streams,
        new_streams,
        ids,
        accepted,
    } = encoded;
    let (new_segment, sealed) = if buffer.is_empty() {
        (None, None)
    } else {
        let first_here = *next - relative.len() as u64;
        match place_group(config, shared, active, known, first_here, buffer) {
            Ok(placed) => placed,
            Err(reason) => {
                poison(shared, &reason);
                return fail_all(accepted, &reason);
            }
        }
    };
    let base = active.len;
    active.len += buffer.len() as u64;
    // (An imported record keeps its time on its first node; only local append times
    // count as the log's time, which stays monotonic whatever a peer's clock says.)
    track(active, base, &relative, buffer, time, &streams, &ids);
    *last_time = time;
    let mut written = Written {
        segment_first: active.first,
        new_segment,
        offsets: relative.into_iter().map(|o| o + base).collect(),
        segment_len: active.len,
        streams,
        new_streams,
        head: *next,
        time,
        accepted,
        sealed,
    };
    // Durable (a roll synced the sealed segment already, so the active one holds all
    // of this group), then visible, then acknowledged.
    // A group of deduplicated requests only wrote nothing: what they name was made
    // durable by an earlier group's sync, so there is nothing to sync.
    if !buffer.is_empty() {
        let synced = std::time::Instant::now();
        if let Err(e) = active.file.sync_data() {
            let reason = e.to_string();
            poison(shared, &reason);
            return fail_all(written.accepted, &reason);
        }
        shared.stats.group(
            written.accepted.len(),
            written.offsets.len(),
            buffer.len(),
            synced.elapsed().as_secs_f64(),
        );
    }
    let head = publish(shared, &mut written);
    if let Some(sealed) = written.sealed.take() {
        let _ = to_idx.send(IdxJob::Sealed(sealed));
    }
    for a in written.accepted {
        let _ = a.reply.send(Ok(Appended {
            positions: a.positions,
            deduplicated: a.deduplicated,
            head,
        }));
    }
}

/// A group's records, encoded into the writer's buffer, and what they add to the
/// writer's tables.
struct Encoded {
    /// Offset of each record in the buffer.
    relative: Vec<u64>,
    /// (stream id, position) of the records, in order.
    streams: Vec<(u32, u64)>,
    /// Streams the group writes first.
    new_streams: Vec<Arc<str>>,
    /// The ids of its local records.
    ids: IdList,
    /// The requests to answer once the group is durable.
    accepted: Vec<Accepted>,
}

/// Validates each request of a group against the writer's own tables (every stream
/// count and id, published or not), answers those refused (or fails them all if the
/// log must stop), and encodes the accepted events into `buffer` at the next
/// positions, the group's first and last frames marked. `None` when nothing is left
/// to write or answer.
fn encode_group(
    shared: &Shared,
    known: &mut Known,
    next: &mut u64,
    time: i64,
    group: Vec<Job>,
    buffer: &mut Vec<u8>,
) -> Option<Encoded> {
    let mut relative = Vec::new();
    let mut streams = Vec::new();
    let mut new_streams = Vec::new();
    let mut ids = IdList::default();
    let mut accepted = Vec::new();
    let group_first = *next;
    for job in group {
        let stored =
            |position: u64| stored_record(shared, buffer, &relative, group_first, position);
        // Each id is hashed once: to check it, then to record it (none for a request
        // without ids).
        let hashes: Vec<Option<u64>> = if job.events.iter().any(|e| e.dedup_id().is_some()) {
            job.events
                .iter()
                .map(|e| e.dedup_id().map(|id| known.ids.hash(id)))
                .collect()
        } else {
            Vec::new()
        };
        match validate(known, &job, &hashes, &stored) {
            Err(e) => {
                let _ = job.reply.send(Err(e));
            }
            Ok(Some(positions)) => accepted.push(Accepted {
                reply: job.reply,
                positions,
                deduplicated: true,
            }),
            Ok(None) => {
                let mut positions = Vec::with_capacity(job.events.len());
                for (i, event) in job.events.into_iter().enumerate() {
                    let hash = hashes.get(i).copied().flatten();
                    let stream_version = if event.stream.is_empty() {
                        0
                    } else {
                        let Some((id, version)) =
                            known.streams.add(&event.stream, &mut new_streams)
                        else {
                            let reason = "the log cannot hold more than 2^32 streams";
                            poison(shared, reason);
                            let _ = job.reply.send(Err(LogError::Poisoned(reason.to_owned())));
                            fail_all(accepted, reason);
                            return None;
                        };
                        streams.push((id, *next));
                        version
                    };
                    let record = Record {
                        position: *next,
                        time: event.time.unwrap_or(time),
                        stream_version,
                        event_type: event.event_type,
                        stream: event.stream,
                        id: event.id,
                        payload: event.payload,
                        origin: event.origin,
                    };
                    relative.push(buffer.len() as u64);
                    encode_frame(&record, buffer);
                    // An imported event's id names the peer event it came from; the
                    // link's position, not the id index, keeps imports exactly once.
                    if let Some(hash) = hash {
                        known.ids.insert_hashed(&record.id, hash, *next);
                        // Not into the active segment's list yet: this group may roll
                        // to the next segment.
                        ids.push(&record.id, *next);
                    }
                    positions.push(*next);
                    *next += 1;
                }
                accepted.push(Accepted {
                    reply: job.reply,
                    positions,
                    deduplicated: false,
                });
            }
        }
    }
    if accepted.is_empty() {
        return None;
    }
    if let Some(&last) = relative.last() {
        // Recovery tells damage from a torn write by the group starts, and keeps only
        // whole groups by their ends (see `format`).
        mark_group_start(buffer);
        mark_group_end(&mut buffer[last as usize..]);
    }
    Some(Encoded {
        relative,
        streams,
        new_streams,
        ids,
        accepted,
    })
}

/// Writes an encoded group (its first record at position `first_here`) at the end of
/// the active segment, into its zeroed space; first rolls to a new segment when the
/// group would overfill this one. Returns the new segment's read handle and the
/// sealed segment's index when it rolled.
///
/// # Errors
/// The I/O error's text (the caller poisons the log).
fn place_group(
    config: &LogConfig,
    shared: &Shared,
    active: &mut Active,
    known: &Known,
    first_here: u64,
    buffer: &[u8],
) -> Result<(Option<File>, Option<SegmentIndex>), String> {
    let mut placed = (None, None);
    if active.len > SEGMENT_HEADER as u64 && active.len + buffer.len() as u64 > config.segment_bytes
    {
        let (file, read) =
            roll(config, active, first_here, shared.identity).map_err(|e| e.to_string())?;
        let old = std::mem::replace(
            active,
            Active {
                file,
                first: first_here,
                len: SEGMENT_HEADER as u64,
                zeroed: SEGMENT_HEADER as u64,
                unzeroed: false,
                seal: SegmentIndex::new(first_here),
                streams: super::Map::default(),
            },
        );
        placed = (Some(read), Some(old.sealed(&known.streams.names)));
    }
    zero_ahead(config, active, buffer.len() as u64)
        .and_then(|()| active.file.write_all_at(buffer, active.len))
        .map_err(|e| e.to_string())?;
    Ok(placed)
}

/// Adds a written group to the active segment's index.
fn track(
    active: &mut Active,
    base: u64,
    relative: &[u64],
    buffer: &[u8],
    time: i64,
    streams: &[(u32, u64)],
    ids: &IdList,
) {
    let seal = &mut active.seal;
    let Some(&last) = relative.last() else {
        return;
    };
    seal.offsets.extend(relative.iter().map(|o| base + o));
    seal.len = base + buffer.len() as u64;
    seal.max_time = seal.max_time.max(time);
    let crc = usize::try_from(last)
        .ok()
        .and_then(|at| buffer.get(at + 4..at + 8))
        .and_then(|b| <[u8; 4]>::try_from(b).ok());
    if let Some(crc) = crc {
        seal.last_crc = u32::from_le_bytes(crc);
    }
    for &(stream, position) in streams {
        active.streams.entry(stream).or_default().push(position);
    }
    for (id, position) in ids.iter() {
        active.seal.ids.push(id, position);
    }
}

/// Makes a synced group visible to readers; returns the new head.
fn publish(shared: &Shared, w: &mut Written) -> u64 {
    let Ok(mut index) = shared.index.write() else {
        return 0;
    };
    if let Some(file) = w.new_segment.take() {
        index.segments.push(Segment {
            first: w.segment_first,
            file,
            offsets: Offsets::Owned(Vec::new()),
            len: 0,
        });
    }
    if let Some(segment) = index.segments.last_mut() {
        segment.offsets.append(&mut w.offsets);
        segment.len = segment.len.max(w.segment_len);
    }
    // New streams first: their ids are the next ones, in order.
    for name in w.new_streams.drain(..) {
        index.streams.add(name, StreamPositions::default());
    }
    for (stream, position) in w.streams.drain(..) {
        index.streams.push(stream, position);
    }
    index.head = index.head.max(w.head);
    index.last_time = index.last_time.max(w.time);
    let head = index.head;
    drop(index);
    shared.head.send_replace(head);
    if let Ok(threads) = shared.unpark.read() {
        for thread in threads.iter() {
            thread.unpark();
        }
    }
    head
}

/// The record at `position`: from the published log, or from the group being built
/// (`buffer`, whose records start at position `group_first`, at offsets `relative`).
fn stored_record(
    shared: &Shared,
    buffer: &[u8],
    relative: &[u64],
    group_first: u64,
    position: u64,
) -> Result<Record, LogError> {
    if position >= group_first {
        let at = usize::try_from(position - group_first)
            .ok()
            .and_then(|i| relative.get(i))
            .and_then(|&offset| buffer.get(offset as usize..));
        return at
            .and_then(|bytes| super::format::decode_frame(bytes).ok())
            .map(|(record, _)| record)
            .ok_or_else(|| LogError::Io(format!("position {position} is not in the group")));
    }
    let index = shared.index.read().map_err(super::lock_poisoned)?;
    super::read_index(&index, position, 1)?
        .pop()
        .ok_or_else(|| LogError::Io(format!("position {position} is not in the log")))
}

/// Checks one request against the log and the group so far. `Ok(Some(..))` is a full
/// duplicate (the original positions, every event the same as the one its id names);
/// `Ok(None)` means append it. `stored` reads the record at a position.
/// `hashes` holds each event's id hash in the id index (`None`: no id to check; empty
/// when no event has one).
fn validate(
    known: &Known,
    job: &Job,
    hashes: &[Option<u64>],
    stored: &dyn Fn(u64) -> Result<Record, LogError>,
) -> Result<Option<Vec<u64>>, LogError> {
    let with_ids = || {
        job.events
            .iter()
            .zip(hashes)
            .filter_map(|(e, h)| Some((e.dedup_id()?, (*h)?)))
    };
    // Ids of the request so far, by their hash: an id twice in one request is refused.
    let mut seen: hashbrown::HashTable<&str> =
        hashbrown::HashTable::with_capacity(hashes.iter().filter(|h| h.is_some()).count());
    for (id, hash) in with_ids() {
        if seen.find(hash, |other| *other == id).is_some() {
            return Err(LogError::DuplicateIdInRequest(id.to_owned()));
        }
        seen.insert_unique(hash, id, |other| known.ids.hash(other));
    }
    if hashes.iter().any(Option::is_some) {
        let found: Vec<Option<u64>> = job
            .events
            .iter()
            .zip(hashes)
            .map(|(e, h)| known.ids.get_hashed(e.dedup_id()?, (*h)?))
            .collect();
        if found.iter().all(Option::is_some) {
            let positions: Vec<u64> = found.into_iter().flatten().collect();
            // A retry must be the same events: an id names one event, and a client
            // reusing one for other content must hear so rather than get a silent
            // "deduplicated" for an event that was never written.
            for (event, &position) in job.events.iter().zip(&positions) {
                let record = stored(position)?;
                let same = record.event_type == event.event_type
                    && record.stream == event.stream
                    && record.payload == event.payload;
                if !same {
                    return Err(LogError::IdConflict {
                        id: event.id.clone(),
                        position,
                    });
                }
            }
            return Ok(Some(positions));
        }
        if let Some((event, position)) = job
            .events
            .iter()
            .zip(&found)
            .find_map(|(e, f)| f.map(|p| (e, p)))
        {
            return Err(LogError::PartialDuplicate {
                id: event.id.clone(),
                position,
            });
        }
    }
    for (stream, expected) in &job.expected {
        let actual = known.streams.count(stream).checked_sub(1);
        let holds = match expected {
            Expected::Any => true,
            Expected::NoStream => actual.is_none(),
            Expected::Exact(v) => actual == Some(*v),
        };
        if !holds {
            return Err(LogError::VersionConflict {
                stream: stream.clone(),
                expected: *expected,
                actual,
            });
        }
    }
    Ok(None)
}

/// Makes sure the active segment has `more` zeroed bytes after its records: when it
/// has not, writes zeros up to [`ZERO_AHEAD`] bytes past them (but not past the
/// segment's size, unless one group needs more). Not synced here: the group's own
/// sync, which follows, makes the new size durable with it.
fn zero_ahead(config: &LogConfig, active: &mut Active, more: u64) -> std::io::Result<()> {
    let needed = active.len + more;
    if needed <= active.zeroed {
        return Ok(());
    }
    let target = (needed + ZERO_AHEAD).min(config.segment_bytes).max(needed);
    let zeros =
        vec![0u8; usize::try_from((target - active.zeroed).min(1 << 20)).unwrap_or(1 << 20)];
    let mut at = active.zeroed;
    while at < target {
        let n = usize::try_from(target - at).map_or(zeros.len(), |n| n.min(zeros.len()));
        if let Err(e) = active.file.write_all_at(&zeros[..n], at) {
            // A disk too full for the zeros may still take the group: it is written
            // at the end of the file, as without zeroed space (a disk that fails
            // fails that write too, and the log is poisoned then). Zeros written
            // before the error are free space like any others.
            if !active.unzeroed {
                tracing::warn!(error = %e, "cannot zero space ahead of the log's records (disk full?): groups grow the file until it can again");
                active.unzeroed = true;
            }
            return Ok(());
        }
        at += n as u64;
    }
    active.zeroed = target;
    active.unzeroed = false;
    Ok(())
}

/// Cuts the sealing segment's zeroed space and syncs it (so a sealed segment is
/// complete on disk, and exactly its records long, before anything is written to the
/// next one), then creates the next segment (with its header, synced, with its
/// directory entry) and a read handle.
fn roll(
    config: &LogConfig,
    sealing: &Active,
    first: u64,
    identity: u128,
) -> std::io::Result<(File, File)> {
    // (Longer than its records by zeroed space, or by zeros a failed attempt left.)
    if sealing.file.metadata()?.len() > sealing.len {
        sealing.file.set_len(sealing.len)?;
    }
    sealing.file.sync_data()?;
    let path = config.dir.join(segment_name(first));
    if path.exists() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("segment {} already exists", path.display()),
        ));
    }
    let file = super::create_segment(&config.dir, identity, first)?;
    let read = File::open(&path)?;
    Ok((file, read))
}
