//! The writer thread: group commit.
//!
//! Invariant: a group is acknowledged only after its bytes are written and
//! `fdatasync`ed; its records become visible to readers (index and head) at the same
//! moment. Validation sees the durable log plus the earlier requests of the same group,
//! so requests in one group are ordered exactly as if they had been committed one by one.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::sync::mpsc::Receiver;

use super::format::{Record, encode_frame};
use super::{Appended, Expected, Index, Job, LogConfig, LogError, Segment, Shared, segment_name};

/// Largest group written at once.
const MAX_GROUP_BYTES: usize = 16 << 20;

/// A request accepted into the current group.
struct Accepted {
    reply: tokio::sync::oneshot::Sender<Result<Appended, LogError>>,
    positions: Vec<u64>,
    deduplicated: bool,
}

/// What the group adds to the index once it is durable.
#[derive(Default)]
struct Pending {
    streams: HashMap<String, Vec<u64>>,
    ids: HashMap<String, u64>,
    offsets: Vec<u64>,
}

pub(super) fn run(config: &LogConfig, shared: &Shared, mut active: File, jobs: &Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
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
        commit_group(config, shared, &mut active, group);
    }
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn commit_group(config: &LogConfig, shared: &Shared, active: &mut File, group: Vec<Job>) {
    if let Some(reason) = shared.poison.lock().ok().and_then(|p| p.clone()) {
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
    let head = index.head;
    let segment_len = index.segments.last().map_or(0, |s| s.len);
    let time = now_micros().max(index.last_time);
    let mut buffer = Vec::new();
    let mut pending = Pending::default();
    let mut accepted = Vec::new();
    let mut next = head;
    for job in group {
        match validate(&index, &pending, &job) {
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
                        let before = index.streams.get(&event.stream).map_or(0, Vec::len)
                            + pending.streams.get(&event.stream).map_or(0, Vec::len);
                        before as u64
                    };
                    let record = Record {
                        position: next,
                        time,
                        stream_version,
                        event_type: event.event_type,
                        stream: event.stream,
                        id: event.id,
                        payload: event.payload,
                    };
                    pending.offsets.push(buffer.len() as u64);
                    encode_frame(&record, &mut buffer);
                    if !record.stream.is_empty() {
                        pending.streams.entry(record.stream).or_default().push(next);
                    }
                    if !record.id.is_empty() {
                        pending.ids.insert(record.id, next);
                    }
                    positions.push(next);
                    next += 1;
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
    if buffer.is_empty() {
        reply_all(accepted, head);
        return;
    }
    // Roll to a new segment when this group would overfill the active one.
    let mut rolled = false;
    let mut base = segment_len;
    if segment_len > 0 && segment_len + buffer.len() as u64 > config.segment_bytes {
        match roll(config, head) {
            Ok(file) => {
                *active = file;
                rolled = true;
                base = 0;
            }
            Err(e) => return fail(shared, accepted, &e.to_string()),
        }
    }
    if let Err(e) = active.write_all(&buffer).and_then(|()| active.sync_data()) {
        return fail(shared, accepted, &e.to_string());
    }
    let read_handle = if rolled {
        match File::open(config.dir.join(segment_name(head))) {
            Ok(f) => Some(f),
            Err(e) => return fail(shared, accepted, &e.to_string()),
        }
    } else {
        None
    };
    let Ok(mut index) = shared.index.write() else {
        return fail(shared, accepted, "internal lock poisoned");
    };
    if let Some(file) = read_handle {
        index.segments.push(Segment {
            first: head,
            file,
            offsets: Vec::new(),
            len: 0,
        });
    }
    if let Some(segment) = index.segments.last_mut() {
        segment
            .offsets
            .extend(pending.offsets.iter().map(|o| o + base));
        segment.len = base + buffer.len() as u64;
    }
    for (stream, positions) in pending.streams {
        index.streams.entry(stream).or_default().extend(positions);
    }
    index.ids.extend(pending.ids);
    index.head = next;
    index.last_time = time;
    drop(index);
    shared.head.send_replace(next);
    reply_all(accepted, next);
}

/// Checks one request against the durable log and the group so far. `Ok(Some(..))` is
/// a full duplicate (the original positions); `Ok(None)` means append it.
fn validate(index: &Index, pending: &Pending, job: &Job) -> Result<Option<Vec<u64>>, LogError> {
    let lookup = |id: &str| index.ids.get(id).or_else(|| pending.ids.get(id)).copied();
    let mut seen = std::collections::HashSet::new();
    for event in &job.events {
        if !event.id.is_empty() && !seen.insert(event.id.as_str()) {
            return Err(LogError::DuplicateIdInRequest(event.id.clone()));
        }
    }
    let with_ids = job.events.iter().filter(|e| !e.id.is_empty()).count();
    if with_ids > 0 {
        let found: Vec<Option<u64>> = job
            .events
            .iter()
            .map(|e| (!e.id.is_empty()).then(|| lookup(&e.id)).flatten())
            .collect();
        let present = found.iter().filter(|f| f.is_some()).count();
        if present == job.events.len() {
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
            + pending.streams.get(stream).map_or(0, Vec::len);
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

fn roll(config: &LogConfig, first: u64) -> std::io::Result<File> {
    let path = config.dir.join(segment_name(first));
    let file = std::fs::OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)?;
    file.sync_all()?;
    File::open(&config.dir)?.sync_all()?;
    Ok(file)
}

fn reply_all(accepted: Vec<Accepted>, head: u64) {
    for a in accepted {
        let _ = a.reply.send(Ok(Appended {
            positions: a.positions,
            deduplicated: a.deduplicated,
            head,
        }));
    }
}

/// Poisons the log and fails every request of the group that was to be written.
fn fail(shared: &Shared, accepted: Vec<Accepted>, reason: &str) {
    tracing::error!(%reason, "log write failed; refusing further writes");
    if let Ok(mut poison) = shared.poison.lock() {
        *poison = Some(reason.to_owned());
    }
    let durable = *shared.head.borrow();
    for a in accepted {
        // A duplicate of events already durable is still a success.
        let result = if a.deduplicated && a.positions.iter().all(|p| *p < durable) {
            Ok(Appended {
                positions: a.positions,
                deduplicated: true,
                head: durable,
            })
        } else {
            Err(LogError::Poisoned(reason.to_owned()))
        };
        let _ = a.reply.send(result);
    }
}
