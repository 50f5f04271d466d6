//! The writer and syncer threads: pipelined group commit.
//!
//! The writer thread takes every append request waiting in its queue (a group),
//! validates each one against the published log plus everything written before it
//! (earlier groups still being synced, earlier requests of the same group), encodes
//! the accepted events and writes them to the active segment — without syncing — then
//! hands the group to the syncer and goes on with the next group. The syncer takes
//! every written group waiting, makes them durable with one `fdatasync` per segment
//! file, publishes them to readers (index and head) and only then acknowledges them.
//! So while one group is being synced, the next one is being validated and written, and
//! one sync covers every group written before it started.
//!
//! Invariants: a request is acknowledged only after its bytes are synced; records
//! become visible to readers in position order, exactly when they are durable;
//! validation orders requests exactly as if they had been committed one by one; after
//! an I/O error (write or sync) the log is poisoned and every later request, and every
//! written but unsynced group, fails.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};

use super::format::{Record, encode_frame};
use super::{Appended, Expected, Index, Job, LogConfig, LogError, Segment, Shared, segment_name};

/// Largest group written at once.
const MAX_GROUP_BYTES: usize = 16 << 20;

/// A request accepted into a group, waiting for its sync.
struct Accepted {
    reply: tokio::sync::oneshot::Sender<Result<Appended, LogError>>,
    positions: Vec<u64>,
    deduplicated: bool,
}

/// A group written to its segment, on its way to the syncer.
struct Written {
    /// The segment file the bytes went to.
    file: Arc<File>,
    /// First position of that segment.
    segment_first: u64,
    /// A read handle when this group starts a new segment.
    new_segment: Option<File>,
    /// Byte offset of each record in the segment.
    offsets: Vec<u64>,
    /// Segment length after this group.
    segment_len: u64,
    /// (stream, position) and (id, position) of the records, in order.
    streams: Vec<(String, u64)>,
    ids: Vec<(String, u64)>,
    /// Head after this group, and its append time.
    head: u64,
    time: i64,
    accepted: Vec<Accepted>,
}

/// Streams and ids of records written but perhaps not yet published. Entries below the
/// published head are also in the index and are ignored (then pruned).
#[derive(Default)]
struct Inflight {
    streams: HashMap<String, Vec<u64>>,
    ids: HashMap<String, u64>,
}

impl Inflight {
    fn prune(&mut self, published: u64) {
        self.streams.retain(|_, positions| {
            positions.retain(|p| *p >= published);
            !positions.is_empty()
        });
        self.ids.retain(|_, p| *p >= published);
    }

    fn stream_count(&self, stream: &str, published: u64) -> usize {
        self.streams
            .get(stream)
            .map_or(0, |p| p.iter().filter(|p| **p >= published).count())
    }
}

/// The writer's own view of the active segment.
struct Active {
    file: Arc<File>,
    first: u64,
    len: u64,
}

pub(super) fn run(config: &LogConfig, shared: &Arc<Shared>, file: File, jobs: &Receiver<Job>) {
    let (to_syncer, written) = std::sync::mpsc::channel::<Written>();
    let syncer_shared = shared.clone();
    let syncer = std::thread::Builder::new()
        .name("datamesh-log-sync".to_owned())
        .spawn(move || sync_loop(&syncer_shared, &written));
    let Ok(syncer) = syncer else {
        poison(shared, "cannot start the log sync thread");
        while let Ok(job) = jobs.recv() {
            let _ = job.reply.send(Err(LogError::Poisoned(
                "cannot start the log sync thread".to_owned(),
            )));
        }
        return;
    };
    let (mut next, first, len, mut last_time) = match shared.index.read() {
        Ok(index) => (
            index.head,
            index.segments.last().map_or(0, |s| s.first),
            index.segments.last().map_or(0, |s| s.len),
            index.last_time,
        ),
        Err(_) => (0, 0, 0, 0),
    };
    let mut active = Active {
        file: Arc::new(file),
        first,
        len,
    };
    let mut inflight = Inflight::default();
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
            &mut inflight,
            &mut next,
            &mut last_time,
            group,
            &to_syncer,
        );
    }
    drop(to_syncer);
    let _ = syncer.join();
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

#[allow(clippy::too_many_arguments)]
fn write_group(
    config: &LogConfig,
    shared: &Shared,
    active: &mut Active,
    inflight: &mut Inflight,
    next: &mut u64,
    last_time: &mut i64,
    group: Vec<Job>,
    to_syncer: &Sender<Written>,
) {
    if let Some(reason) = poisoned(shared) {
        for job in group {
            let _ = job.reply.send(Err(LogError::Poisoned(reason.clone())));
        }
        return;
    }
    let Ok(index) = shared.index.read() else {
        for job in group {
            let _ = job
                .reply
                .send(Err(LogError::Io("internal lock poisoned".to_owned())));
        }
        return;
    };
    let published = index.head;
    inflight.prune(published);
    let time = now_micros().max(*last_time);
    let mut buffer = Vec::new();
    let mut relative = Vec::new();
    let mut streams = Vec::new();
    let mut ids = Vec::new();
    let mut accepted = Vec::new();
    for job in group {
        match validate(&index, inflight, published, &job) {
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
                for event in job.events {
                    let stream_version = if event.stream.is_empty() {
                        0
                    } else {
                        (index.streams.get(&event.stream).map_or(0, Vec::len)
                            + inflight.stream_count(&event.stream, published))
                            as u64
                    };
                    let record = Record {
                        position: *next,
                        time,
                        stream_version,
                        event_type: event.event_type,
                        stream: event.stream,
                        id: event.id,
                        payload: event.payload,
                    };
                    relative.push(buffer.len() as u64);
                    encode_frame(&record, &mut buffer);
                    if !record.stream.is_empty() {
                        inflight
                            .streams
                            .entry(record.stream.clone())
                            .or_default()
                            .push(*next);
                        streams.push((record.stream, *next));
                    }
                    if !record.id.is_empty() {
                        inflight.ids.insert(record.id.clone(), *next);
                        ids.push((record.id, *next));
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
    drop(index);
    if accepted.is_empty() {
        return;
    }
    let mut new_segment = None;
    if !buffer.is_empty() {
        // Roll to a new segment when this group would overfill the active one.
        let first_here = *next - relative.len() as u64;
        if active.len > 0 && active.len + buffer.len() as u64 > config.segment_bytes {
            match roll(config, first_here) {
                Ok((file, read)) => {
                    *active = Active {
                        file: Arc::new(file),
                        first: first_here,
                        len: 0,
                    };
                    new_segment = Some(read);
                }
                Err(e) => {
                    poison(shared, &e.to_string());
                    return fail_all(accepted, &e.to_string());
                }
            }
        }
        if let Err(e) = (&*active.file).write_all(&buffer) {
            poison(shared, &e.to_string());
            return fail_all(accepted, &e.to_string());
        }
    }
    let base = active.len;
    active.len += buffer.len() as u64;
    *last_time = time;
    let written = Written {
        file: active.file.clone(),
        segment_first: active.first,
        new_segment,
        offsets: relative.into_iter().map(|o| o + base).collect(),
        segment_len: active.len,
        streams,
        ids,
        head: *next,
        time,
        accepted,
    };
    if let Err(unsent) = to_syncer.send(written) {
        fail_all(unsent.0.accepted, "the log sync thread stopped");
    }
}

/// Makes written groups durable, publishes them, acknowledges them.
fn sync_loop(shared: &Shared, written: &Receiver<Written>) {
    while let Ok(first) = written.recv() {
        let mut batch = vec![first];
        while let Ok(w) = written.try_recv() {
            batch.push(w);
        }
        if let Some(reason) = poisoned(shared) {
            for w in batch {
                fail_all(w.accepted, &reason);
            }
            continue;
        }
        // One sync per segment file touched (more than one only across a roll).
        let mut synced: Vec<u64> = Vec::new();
        let mut failure = None;
        for w in &batch {
            if !synced.contains(&w.segment_first) {
                if let Err(e) = w.file.sync_data() {
                    failure = Some(e.to_string());
                    break;
                }
                synced.push(w.segment_first);
            }
        }
        if let Some(reason) = failure {
            poison(shared, &reason);
            for w in batch {
                fail_all(w.accepted, &reason);
            }
            continue;
        }
        let head = publish(shared, &mut batch);
        for w in batch {
            for a in w.accepted {
                let _ = a.reply.send(Ok(Appended {
                    positions: a.positions,
                    deduplicated: a.deduplicated,
                    head,
                }));
            }
        }
    }
}

/// Makes synced groups visible to readers, in order; returns the new head.
fn publish(shared: &Shared, batch: &mut [Written]) -> u64 {
    let Ok(mut index) = shared.index.write() else {
        return 0;
    };
    for w in batch.iter_mut() {
        if let Some(file) = w.new_segment.take() {
            index.segments.push(Segment {
                first: w.segment_first,
                file,
                offsets: Vec::new(),
                len: 0,
            });
        }
        if let Some(segment) = index.segments.last_mut() {
            segment.offsets.append(&mut w.offsets);
            segment.len = segment.len.max(w.segment_len);
        }
        for (stream, position) in w.streams.drain(..) {
            index.streams.entry(stream).or_default().push(position);
        }
        index.ids.extend(w.ids.drain(..));
        index.head = index.head.max(w.head);
        index.last_time = index.last_time.max(w.time);
    }
    let head = index.head;
    drop(index);
    shared.head.send_replace(head);
    head
}

/// Checks one request against the published log, the written-but-unpublished records
/// and the group so far. `Ok(Some(..))` is a full duplicate (the original positions);
/// `Ok(None)` means append it.
fn validate(
    index: &Index,
    inflight: &Inflight,
    published: u64,
    job: &Job,
) -> Result<Option<Vec<u64>>, LogError> {
    let lookup = |id: &str| index.ids.get(id).or_else(|| inflight.ids.get(id)).copied();
    let mut seen = std::collections::HashSet::new();
    for event in &job.events {
        if !event.id.is_empty() && !seen.insert(event.id.as_str()) {
            return Err(LogError::DuplicateIdInRequest(event.id.clone()));
        }
    }
    if job.events.iter().any(|e| !e.id.is_empty()) {
        let found: Vec<Option<u64>> = job
            .events
            .iter()
            .map(|e| (!e.id.is_empty()).then(|| lookup(&e.id)).flatten())
            .collect();
        if found.iter().all(Option::is_some) {
            return Ok(Some(found.into_iter().flatten().collect()));
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
        let count = index.streams.get(stream).map_or(0, Vec::len)
            + inflight.stream_count(stream, published);
        let actual = (count as u64).checked_sub(1);
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

/// Creates the next segment (synced, with its directory entry) and a read handle.
fn roll(config: &LogConfig, first: u64) -> std::io::Result<(File, File)> {
    let path = config.dir.join(segment_name(first));
    let file = std::fs::OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)?;
    file.sync_all()?;
    File::open(&config.dir)?.sync_all()?;
    let read = File::open(&path)?;
    Ok((file, read))
}
