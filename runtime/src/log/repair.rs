//! `datamesh repair`: what to do with a log that does not verify.
//!
//! The node refuses to open a log whose damage is not a torn write (a damaged sealed
//! segment, or damage inside the active one followed by intact records), because
//! cutting it would drop acknowledged events. Repair is the operator's explicit step
//! after that refusal (and after copying the data directory):
//!
//! - [`inspect`] reads every segment (ignoring idx files), verifying every frame, and
//!   reports the first place the log stops verifying, how many records come before it
//!   (kept), and what lies after it: the intact records it can still read (salvaged)
//!   and the positions it cannot. It writes nothing.
//! - [`apply`] does the same, then saves everything it will remove into a new
//!   directory beside the log (`repair-<unix seconds>/`: the salvaged records as
//!   `dropped.jsonl`, in the format `datamesh append --file` takes, and the raw bytes
//!   of the cut tail and of every later segment), and only then cuts the log at the
//!   damage: the damaged segment is truncated there (or removed, when its header is
//!   damaged), the later segments and the stale idx files are removed, and the
//!   directory is synced.
//!
//! The log then holds exactly the verified prefix. Positions are never reused for
//! other events silently: the projection store notices its checkpoints are past the
//! new head and rebuilds, and salvaged events appended again get new positions.
//!
//! Invariant: [`inspect`] never writes; [`apply`] removes nothing it has not first
//! saved and synced.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::format::SEGMENT_HEADER;
use super::{LogError, Record, check_header, index, segment_name};

/// Where a log first stops verifying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamageAt {
    /// The segment file.
    pub segment: String,
    /// Byte offset in it.
    pub offset: u64,
    /// The position the damaged record should hold.
    pub position: u64,
    /// What is wrong.
    pub reason: String,
}

/// What a repair finds (and, applied, did).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Segment files read.
    pub segments: usize,
    /// Records that verify before the damage (all of them when there is none): the
    /// log a repair keeps.
    pub kept: u64,
    /// The first damage, if any.
    pub damage: Option<DamageAt>,
    /// Bytes a repair removes from the log (from the damage to the end).
    pub cut_bytes: u64,
    /// Intact records after the damage, by position (saved to `dropped.jsonl`).
    pub salvaged: Vec<u64>,
    /// The highest position seen after the damage, plus one (positions from
    /// `damage.position` up to it are dropped from the log).
    pub dropped_until: u64,
    /// Where the removed data was saved, when applied.
    pub saved_to: Option<PathBuf>,
}

impl RepairReport {
    /// Positions after the damage that could not be read at all.
    pub fn unreadable(&self) -> u64 {
        let from = self.damage.as_ref().map_or(self.kept, |d| d.position);
        self.dropped_until
            .saturating_sub(from)
            .saturating_sub(self.salvaged.len() as u64)
    }
}

impl std::fmt::Display for RepairReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "segments read: {}", self.segments)?;
        let Some(damage) = &self.damage else {
            writeln!(
                f,
                "every record verifies: positions 0..{} (nothing to repair)",
                self.kept
            )?;
            return Ok(());
        };
        writeln!(
            f,
            "damage: segment {} at byte {} (position {}): {}",
            damage.segment, damage.offset, damage.position, damage.reason
        )?;
        writeln!(
            f,
            "kept: positions 0..{} ({} records, all verified)",
            self.kept, self.kept
        )?;
        writeln!(
            f,
            "dropped from the log: positions {}..{} ({} bytes)",
            damage.position, self.dropped_until, self.cut_bytes
        )?;
        writeln!(
            f,
            "  salvaged (intact, saved to dropped.jsonl for `datamesh append --file`): {} records{}",
            self.salvaged.len(),
            match (self.salvaged.first(), self.salvaged.last()) {
                (Some(a), Some(b)) => format!(", positions {a}..={b}"),
                _ => String::new(),
            }
        )?;
        writeln!(f, "  unreadable: {} records", self.unreadable())?;
        match &self.saved_to {
            Some(dir) => writeln!(
                f,
                "applied: the removed bytes and the salvaged records are in {}",
                dir.display()
            ),
            None => writeln!(
                f,
                "nothing was changed; run again with --apply to cut the log at the damage (what is removed is saved first)"
            ),
        }
    }
}

/// A segment as repair reads it.
struct Found {
    first: u64,
    path: PathBuf,
    len: u64,
}

/// The first damage, the records before it and what follows it.
struct Findings {
    report: RepairReport,
    segments: Vec<Found>,
    /// Index in `segments` of the damaged one.
    damaged: Option<usize>,
    /// Whether the damaged segment's header is what is damaged.
    header_damaged: bool,
    salvaged: Vec<Record>,
}

/// Reads the log in `dir` and reports what a repair would do. Writes nothing (but the
/// lock file, when missing).
///
/// # Errors
/// I/O errors; [`LogError::Locked`] when a node has the log open.
pub fn inspect(dir: &Path) -> Result<RepairReport, LogError> {
    let _lock = super::lock_dir(dir)?;
    Ok(find(dir)?.report)
}

/// Repairs the log in `dir`: saves what lies after the first damage into
/// `dir/../repair-<unix seconds>/` (or beside `dir` when it has no parent), then
/// cuts the log there. A log without damage is left alone.
///
/// # Errors
/// I/O errors; when saving fails, nothing of the log has changed. [`LogError::Locked`]
/// when a node has the log open.
pub fn apply(dir: &Path) -> Result<RepairReport, LogError> {
    let _lock = super::lock_dir(dir)?;
    let Findings {
        mut report,
        segments,
        damaged,
        header_damaged,
        salvaged,
    } = find(dir)?;
    let (Some(damaged), Some(damage)) = (damaged, report.damage.clone()) else {
        return Ok(report);
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let parent = dir.parent().unwrap_or(dir);
    let mut saved = parent.join(format!("repair-{stamp}"));
    let mut n = 1;
    while saved.exists() {
        saved = parent.join(format!("repair-{stamp}-{n}"));
        n += 1;
    }
    super::private_dir(&saved)?;
    // 1. Save: the salvaged records, the cut tail, every later segment.
    let mut jsonl = super::private_file(&saved.join("dropped.jsonl"))?;
    for record in &salvaged {
        jsonl.write_all(&append_line(record))?;
    }
    jsonl.sync_all()?;
    let cut_at = if header_damaged { 0 } else { damage.offset };
    for (i, segment) in segments.iter().enumerate().skip(damaged) {
        let from = if i == damaged { cut_at } else { 0 };
        let name = segment_name(segment.first);
        let mut bytes = vec![0u8; usize::try_from(segment.len - from).unwrap_or(0)];
        File::open(&segment.path)?.read_exact_at(&mut bytes, from)?;
        let mut out = super::private_file(&saved.join(format!("{name}.from-byte-{from}")))?;
        out.write_all(&bytes)?;
        out.sync_all()?;
    }
    File::open(&saved)?.sync_all()?;
    // 2. Cut.
    for (i, segment) in segments.iter().enumerate().skip(damaged) {
        let idx = dir.join(index::idx_name(segment.first));
        if idx.exists() {
            std::fs::remove_file(&idx)?;
        }
        if i == damaged && !header_damaged {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&segment.path)?;
            file.set_len(cut_at)?;
            file.sync_all()?;
            end_last_group(&segment.path, segment.first)?;
        } else {
            std::fs::remove_file(&segment.path)?;
        }
    }
    File::open(dir)?.sync_all()?;
    report.saved_to = Some(saved);
    Ok(report)
}

/// Marks the last record of a segment cut at damage as the end of its group: the
/// records before the damage were acknowledged (that is what the damage check proved),
/// and recovery keeps a group only up to its marked end (see `format`).
fn end_last_group(path: &Path, first: u64) -> Result<(), LogError> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let scan = index::scan(first, &file)?;
    let Some(last) = scan.segment.offsets.last().copied() else {
        return Ok(());
    };
    if scan
        .committed
        .is_some_and(|(end, _)| end == scan.segment.len)
    {
        return Ok(());
    }
    let mut frame = vec![0u8; usize::try_from(scan.segment.len - last).unwrap_or(0)];
    file.read_exact_at(&mut frame, last)?;
    super::format::mark_group_end(&mut frame);
    file.write_all_at(&frame[..8], last)?;
    file.sync_all()?;
    Ok(())
}

/// One line of `dropped.jsonl`: what `datamesh append --file` takes.
fn append_line(record: &Record) -> Vec<u8> {
    let data = serde_json::from_slice::<serde_json::Value>(&record.payload).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&record.payload).into_owned())
    });
    let mut line = serde_json::json!({ "type": record.event_type, "data": data });
    if let Some(map) = line.as_object_mut() {
        if !record.stream.is_empty() {
            map.insert("stream".into(), record.stream.clone().into());
        }
        if !record.id.is_empty() {
            map.insert("id".into(), record.id.clone().into());
        }
    }
    let mut out = line.to_string().into_bytes();
    out.push(b'\n');
    out
}

fn find(dir: &Path) -> Result<Findings, LogError> {
    let names = segment_files_readonly(dir)?;
    let mut report = RepairReport {
        segments: names.len(),
        ..RepairReport::default()
    };
    let mut segments = Vec::with_capacity(names.len());
    let mut damaged = None;
    let mut header_damaged = false;
    let mut identity = None;
    let mut head = 0u64;
    let last = names.len().saturating_sub(1);
    for (i, (first, path)) in names.into_iter().enumerate() {
        let file = File::open(&path)?;
        let len = file.metadata()?.len();
        let name = segment_name(first);
        segments.push(Found {
            first,
            path: path.clone(),
            len,
        });
        if damaged.is_some() {
            continue;
        }
        let here = segments.len() - 1;
        let header = check_header(&file, &name, first, identity).and_then(|h| {
            if first == head {
                Ok(h)
            } else {
                Err(LogError::Header {
                    segment: name.clone(),
                    reason: format!("starts at position {first}, expected {head}"),
                })
            }
        });
        match header {
            Err(e) => {
                damaged = Some(here);
                header_damaged = true;
                report.damage = Some(DamageAt {
                    segment: name,
                    offset: 0,
                    position: head,
                    reason: e.to_string(),
                });
                report.cut_bytes += len;
            }
            Ok(header) => {
                identity.get_or_insert(header.identity);
                let scan = index::scan(first, &file)?;
                head = first + scan.segment.offsets.len() as u64;
                // Zeros after the last segment's records are the writer's zeroed
                // space, which a stopped node leaves (the node keeps it too).
                let free =
                    i == last && scan.stopped.is_some() && all_zero(&file, scan.segment.len, len)?;
                if let Some(reason) = scan.stopped.filter(|_| !free) {
                    damaged = Some(here);
                    report.damage = Some(DamageAt {
                        segment: name,
                        offset: scan.segment.len,
                        position: head,
                        reason,
                    });
                    report.cut_bytes += len - scan.segment.len;
                }
            }
        }
    }
    report.kept = head;
    report.dropped_until = head;
    let mut salvaged = Vec::new();
    if let (Some(at), Some(damage)) = (damaged, &report.damage) {
        let mut expected = damage.position;
        for (i, segment) in segments.iter().enumerate().skip(at) {
            let from = if i == at && !header_damaged {
                damage.offset
            } else {
                (SEGMENT_HEADER as u64).min(segment.len)
            };
            if i != at {
                report.cut_bytes += segment.len;
            }
            let mut bytes = vec![0u8; usize::try_from(segment.len - from).unwrap_or(0)];
            File::open(&segment.path)?.read_exact_at(&mut bytes, from)?;
            // The damaged frame itself is skipped: start after its first byte.
            let skip = usize::from(i == at && !header_damaged);
            // A later segment's records start at its first position (its name), even
            // when a whole segment between could not be read.
            let from_position = if i == at {
                expected
            } else {
                expected.max(segment.first)
            };
            let found: Vec<Record> = index::intact_frames(&bytes, skip, from_position)
                .map(|(_, frame)| frame.to_record())
                .collect();
            for record in found {
                expected = record.position + 1;
                report.dropped_until = report.dropped_until.max(expected);
                report.salvaged.push(record.position);
                salvaged.push(record);
            }
        }
    }
    Ok(Findings {
        report,
        segments,
        damaged,
        header_damaged,
        salvaged,
    })
}

/// Whether bytes `from..to` of `file` are all zero.
fn all_zero(file: &File, from: u64, to: u64) -> std::io::Result<bool> {
    let mut buffer = vec![0u8; 1 << 16];
    let mut at = from;
    while at < to {
        let n = usize::try_from(to - at).map_or(buffer.len(), |n| n.min(buffer.len()));
        file.read_exact_at(&mut buffer[..n], at)?;
        if buffer[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

/// The segment files of `dir` in order, without removing anything (recovery's listing
/// removes the temporaries a crash left; repair only reads until it applies).
pub(super) fn segment_files_readonly(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LogError> {
    if !dir.is_dir() {
        return Err(LogError::Io(format!(
            "{} is not a log directory",
            dir.display()
        )));
    }
    let mut names: Vec<(u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if let Some(first) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|s| s.parse().ok())
        {
            names.push((first, path));
        }
    }
    names.sort();
    Ok(names)
}
