//! Sidecar index files of sealed segments, the per-segment scan they replace, and the
//! in-memory offset tables and stream index built from them.
//!
//! When a segment is sealed (the writer rolled to the next one and every record of the
//! sealed segment is synced and acknowledged), `<first:020>.idx` is written beside
//! `<first:020>.seg`: everything recovery would otherwise rebuild by scanning that
//! segment. Layout, little endian:
//!
//! ```text
//! magic "DMIDX\0\0\x02" (the idx format version is its last byte) | first u64 | segment length u64 | records u32 |
//! streams u32 | ids u32 | crc of the last frame u32 | max time i64 |
//! offsets: records x u32 (byte offset of each record in the segment) |
//! streams, ascending by name x (name: u16 len + bytes | n u32 |
//!     n x u32 position - first, ascending) |
//! ids, ascending by position x (id: u16 len + bytes | u32 position - first) |
//! crc32 u32 of everything before it
//! ```
//!
//! Offsets and positions are 32-bit relative numbers, so a segment longer than
//! `u32::MAX` bytes gets no idx (it is always scanned).
//!
//! Loading is one read, one checksum and one validation pass per file, with no
//! per-record allocation, copy or hashing: the idx bytes stay in memory (shared through an `Arc`) and are the sealed segment's offset
//! table ([`Offsets::Idx`]) and, for each stream, a chunk of its positions
//! ([`StreamPositions`]: chunks of sealed segments, then the owned positions of the
//! active one). The stream index is built by one k-way merge of the per-segment
//! tables, which are sorted by name, so no name is hashed more than once; a stream
//! averaging fewer than [`MIN_CHUNK`] positions per segment gets its own copy instead
//! of chunks, so sparse streams do not pay a chunk per event. The log thus holds 4
//! bytes per sealed record offset and stream position instead of 8.
//!
//! An idx is a cache, never a source of truth. It is used only when its checksum
//! verifies, its structure is sound (offsets start after the segment header and strictly increase below the
//! segment length; names sorted and unique; positions ascending and in range), its
//! first position and segment length equal the segment file's, and a spot check of the
//! segment agrees: a few frames at evenly spaced recorded offsets (always the first and
//! the last) must decode with their checksum, have the expected position and length,
//! a time within the recorded maximum, and the stream and id the idx records for that
//! position; the last must carry the recorded checksum. Anything else falls back to a
//! scan of the segment. Loading does not verify every frame of a sealed segment: damage
//! inside one after its idx was written is reported by the read that meets it
//! ([`super::LogError::Corrupt`]), not at open.
//!
//! Files are written to `<first:020>.idx.tmp`, synced, renamed and the directory synced,
//! so a crash leaves either no idx or a complete one.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::Map;
use std::fs::File;
use std::io::{Read, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::format::{self, FRAME_HEADER, MAX_BODY, SEGMENT_HEADER};
use super::ids::IdList;

/// Format 2: offsets start after the segment header (log format 1).
const MAGIC: &[u8; 8] = b"DMIDX\0\0\x02";

/// Bytes of the fixed header.
const HEADER: usize = 48;

/// Frames read back to spot-check a segment against its idx.
const SPOT_CHECKS: usize = 9;

/// File name of a segment's idx.
pub(super) fn idx_name(first: u64) -> String {
    format!("{first:020}.idx")
}

/// Everything recovery learns from one segment.
#[derive(Debug, Clone)]
pub(super) struct SegmentIndex {
    /// First position.
    pub first: u64,
    /// Bytes of the records.
    pub len: u64,
    /// Byte offset of each record.
    pub offsets: Vec<u64>,
    /// Stream -> positions in this segment, ascending.
    pub streams: Map<String, Vec<u64>>,
    /// (id, position), in position order.
    pub ids: IdList,
    /// Largest record time, `i64::MIN` when empty.
    pub max_time: i64,
    /// Checksum of the last frame.
    pub last_crc: u32,
}

impl SegmentIndex {
    /// The index of an empty segment (its header only).
    pub fn new(first: u64) -> SegmentIndex {
        SegmentIndex {
            first,
            len: SEGMENT_HEADER as u64,
            offsets: Vec::new(),
            streams: Map::default(),
            ids: IdList::default(),
            max_time: i64::MIN,
            last_crc: 0,
        }
    }

    /// Adds the next record (its position is `first + offsets.len()`).
    pub fn push(
        &mut self,
        offset: u64,
        frame_len: u64,
        time: i64,
        stream: &str,
        id: &str,
        crc: u32,
    ) {
        let position = self.first + self.offsets.len() as u64;
        self.offsets.push(offset);
        self.len = offset + frame_len;
        self.max_time = self.max_time.max(time);
        self.last_crc = crc;
        if !stream.is_empty() {
            self.add_stream(stream, position);
        }
        if !id.is_empty() {
            self.ids.push(id, position);
        }
    }

    /// Adds `position` to a stream.
    pub fn add_stream(&mut self, stream: &str, position: u64) {
        if let Some(positions) = self.streams.get_mut(stream) {
            positions.push(position);
        } else {
            self.streams.insert(stream.to_owned(), vec![position]);
        }
    }

    /// This segment's streams, ascending by name.
    pub fn stream_list(&self) -> StreamList<'_> {
        let mut list: StreamList<'_> = self
            .streams
            .iter()
            .map(|(name, positions)| (name.as_str(), Part::Scanned(positions)))
            .collect();
        list.sort_unstable_by(|a, b| a.0.cmp(b.0));
        list
    }
}

/// Bytes read at a time by a scan.
const SCAN_CHUNK: usize = 8 << 20;

/// What a scan found.
pub(super) struct Scan {
    /// The index of the good prefix.
    pub segment: SegmentIndex,
    /// Why the scan stopped before the end of the file, if it did.
    pub stopped: Option<String>,
    /// Bytes in the file.
    pub file_len: u64,
    /// The end of the last frame that ends a group (format 2), and the records up to
    /// it: what a crash cannot have left half-written.
    pub committed: Option<(u64, usize)>,
}

/// Scans the records of a segment file from its first frame (after the header, which
/// the caller checked), verifying every frame, in chunks through one buffer. Stops at the first frame that does not decode or does
/// not have the next position, and says why; the index covers the good prefix.
///
/// # Errors
/// I/O errors.
pub(super) fn scan(first: u64, file: &File) -> std::io::Result<Scan> {
    let file_len = file.metadata()?.len();
    let chunk = usize::try_from(file_len).map_or(SCAN_CHUNK, |n| n.clamp(4096, SCAN_CHUNK));
    scan_chunked(first, file, chunk)
}

/// [`scan`], reading `chunk` bytes at a time (more for a longer frame).
pub(super) fn scan_chunked(first: u64, mut file: &File, chunk: usize) -> std::io::Result<Scan> {
    use std::io::Seek;
    let file_len = file.metadata()?.len();
    let mut segment = SegmentIndex::new(first);
    let mut buffer = vec![0u8; chunk.max(FRAME_HEADER)];
    file.seek(std::io::SeekFrom::Start(SEGMENT_HEADER as u64))?;
    // Unscanned bytes are buffer[start..end]; `at` is the file offset of `start`.
    let (mut start, mut end, mut at) = (0usize, 0usize, SEGMENT_HEADER as u64);
    let mut eof = false;
    let mut committed = None;
    let stopped = loop {
        if start == end && eof {
            break None;
        }
        let expected = first + segment.offsets.len() as u64;
        match format::decode_frame_ref(&buffer[start..end]) {
            Ok((frame, used)) if frame.position == expected => {
                segment.push(
                    at,
                    used as u64,
                    frame.local_time(),
                    frame.stream,
                    frame.dedup_id(),
                    frame.crc,
                );
                start += used;
                at += used as u64;
                if frame.group_end {
                    committed = Some((at, segment.offsets.len()));
                }
            }
            Ok((frame, _)) => {
                break Some(format!(
                    "record has position {}, expected {expected}",
                    frame.position
                ));
            }
            Err(format::FrameError::Incomplete) if !eof => {
                // Keep the partial frame, make room for the whole of it, read on.
                buffer.copy_within(start..end, 0);
                end -= start;
                start = 0;
                // With a whole header, its length is at most MAX_BODY (else the
                // frame would be corrupt, not incomplete).
                let needed = buffer
                    .get(..FRAME_HEADER)
                    .filter(|_| end >= FRAME_HEADER)
                    .and_then(|b| <[u8; 4]>::try_from(&b[..4]).ok())
                    .map_or(FRAME_HEADER, |b| {
                        FRAME_HEADER + (u32::from_le_bytes(b) as usize).min(MAX_BODY)
                    });
                if needed > buffer.len() {
                    buffer.resize(needed, 0);
                }
                while end < buffer.len() {
                    match file.read(&mut buffer[end..]) {
                        Ok(0) => {
                            eof = true;
                            break;
                        }
                        Ok(n) => end += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => break Some(format!("{e:?} frame")),
        }
    };
    let file_len = file_len.max(at + (end - start) as u64);
    Ok(Scan {
        segment,
        stopped,
        file_len,
        committed,
    })
}

/// Intact records found after a damaged one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IntactAfter {
    /// Byte offset of the first intact frame after the damage.
    pub offset: u64,
    /// Its position.
    pub position: u64,
    /// Intact frames found after the damage.
    pub records: u64,
    /// Whether they prove the damage is not a torn write: one of them starts a group,
    /// so the damaged frame lies in an earlier group, synced before this one was
    /// written.
    pub proves_damage: bool,
}

/// The intact frames in `bytes` (the file from a damaged frame on, whose position
/// should have been `expected`), from offset `skip` on: tries every byte offset for a
/// frame that verifies and carries a plausible position (at least `expected`, above the
/// last one found, and no more records past `expected` than the bytes could hold; the
/// position is checked before any checksum), follows the frames from there and
/// resynchronises after each further damage. Yields each frame with its offset in
/// `bytes`.
pub(super) fn intact_frames(
    bytes: &[u8],
    skip: usize,
    expected: u64,
) -> impl Iterator<Item = (usize, format::FrameRef<'_>)> {
    let min_frame = (FRAME_HEADER + format::BODY_FIXED) as u64;
    let most = bytes.len() as u64 / min_frame + 1;
    let mut at = skip;
    let mut last_position: Option<u64> = None;
    std::iter::from_fn(move || {
        while at + FRAME_HEADER + format::BODY_FIXED <= bytes.len() {
            let position = bytes
                .get(at + FRAME_HEADER..at + FRAME_HEADER + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_le_bytes);
            let candidate = position.is_some_and(|p| {
                p >= expected && p - expected <= most && last_position.is_none_or(|l| p > l)
            });
            if candidate && let Ok((frame, used)) = format::decode_frame_ref(&bytes[at..]) {
                let here = at;
                at += used;
                last_position = Some(frame.position);
                return Some((here, frame));
            }
            at += 1;
        }
        None
    })
}

/// What follows a damaged frame at file offset `base` (`bytes` from it on, its
/// position `expected`): the intact frames after it (see [`intact_frames`]), and
/// whether they prove it is not a torn write.
pub(super) fn intact_after(bytes: &[u8], base: u64, expected: u64) -> Option<IntactAfter> {
    let mut found: Option<IntactAfter> = None;
    for (at, frame) in intact_frames(bytes, 1, expected) {
        let info = found.get_or_insert(IntactAfter {
            offset: base + at as u64,
            position: frame.position,
            records: 0,
            proves_damage: false,
        });
        info.records += 1;
        info.proves_damage |= frame.group_start;
    }
    found
}

/// The idx bytes of a segment; `None` when it does not fit 32-bit offsets.
pub(super) fn encode(segment: &SegmentIndex) -> Option<Vec<u8>> {
    let count = u32::try_from(segment.offsets.len()).ok()?;
    u32::try_from(segment.len).ok()?;
    let relative = |p: u64| u32::try_from(p - segment.first).unwrap_or(u32::MAX);
    let mut streams: Vec<(&String, &Vec<u64>)> = segment.streams.iter().collect();
    streams.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let names: usize = streams.iter().map(|(s, _)| s.len() + 6).sum::<usize>()
        + segment
            .ids
            .iter()
            .map(|(id, _)| id.len() + 6)
            .sum::<usize>();
    let positions: usize = streams.iter().map(|(_, p)| p.len()).sum();
    let mut out = Vec::with_capacity(HEADER + 4 * (segment.offsets.len() + positions) + names + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&segment.first.to_le_bytes());
    out.extend_from_slice(&segment.len.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&u32::try_from(streams.len()).ok()?.to_le_bytes());
    out.extend_from_slice(&u32::try_from(segment.ids.len()).ok()?.to_le_bytes());
    out.extend_from_slice(&segment.last_crc.to_le_bytes());
    out.extend_from_slice(&segment.max_time.to_le_bytes());
    for offset in &segment.offsets {
        out.extend_from_slice(&u32::try_from(*offset).ok()?.to_le_bytes());
    }
    for (stream, positions) in streams {
        out.extend_from_slice(&u16::try_from(stream.len()).ok()?.to_le_bytes());
        out.extend_from_slice(stream.as_bytes());
        out.extend_from_slice(&u32::try_from(positions.len()).ok()?.to_le_bytes());
        for p in positions {
            out.extend_from_slice(&relative(*p).to_le_bytes());
        }
    }
    for (id, position) in segment.ids.iter() {
        out.extend_from_slice(&u16::try_from(id.len()).ok()?.to_le_bytes());
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&relative(position).to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Some(out)
}

/// Writes a segment's idx atomically and durably.
pub(super) fn write(dir: &Path, first: u64, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{}.tmp", idx_name(first)));
    let mut file = super::private_file(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, dir.join(idx_name(first)))?;
    File::open(dir)?.sync_all()
}

/// A sealed segment's idx, read and checked. Offsets, names and positions stay in its
/// bytes, which the log keeps (shared) as the segment's offset table and as chunks of
/// its streams' positions.
#[derive(Debug)]
pub(super) struct IdxFile {
    bytes: Vec<u8>,
    /// First position.
    pub first: u64,
    /// Segment length.
    pub len: u64,
    /// Largest record time.
    pub max_time: i64,
    last_crc: u32,
    /// Records.
    count: usize,
    /// The record offsets (range of `bytes`, u32 each).
    offsets: Range<usize>,
    /// Name and positions (ranges of `bytes`) of each stream, ascending by name.
    streams: Vec<(Range<usize>, Range<usize>)>,
    /// Id (range of `bytes`) and position of each id, ascending by position.
    ids: Vec<(Range<usize>, u64)>,
}

impl IdxFile {
    fn text(&self, range: &Range<usize>) -> &str {
        // Checked UTF-8 when parsed.
        self.bytes
            .get(range.clone())
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }

    fn words(&self, range: &Range<usize>) -> &[[u8; 4]] {
        self.bytes
            .get(range.clone())
            .map(|b| b.as_chunks::<4>().0)
            .unwrap_or_default()
    }

    /// Records in the segment.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Byte offset of record `i` of the segment.
    pub fn offset(&self, i: usize) -> Option<u64> {
        self.words(&self.offsets)
            .get(i)
            .map(|o| u64::from(word(*o)))
    }

    /// This segment's streams, ascending by name.
    pub fn stream_list(self: &Arc<Self>) -> StreamList<'_> {
        self.streams
            .iter()
            .map(|(name, positions)| (self.text(name), Part::Idx(self, positions.clone())))
            .collect()
    }

    /// (id, position), ascending by position.
    pub fn ids(&self) -> impl ExactSizeIterator<Item = (&str, u64)> {
        self.ids
            .iter()
            .map(|(id, position)| (self.text(id), *position))
    }

    /// Whether the idx records `position` in `stream`.
    fn stream_has(&self, stream: &str, position: u64) -> bool {
        let Ok(relative) = u32::try_from(position - self.first) else {
            return false;
        };
        self.streams
            .binary_search_by(|(name, _)| self.text(name).cmp(stream))
            .ok()
            .and_then(|i| self.streams.get(i))
            .is_some_and(|(_, raw)| {
                self.words(raw)
                    .binary_search_by_key(&relative, |p| u32::from_le_bytes(*p))
                    .is_ok()
            })
    }

    /// The id the idx records for `position`, if any.
    fn id_of(&self, position: u64) -> Option<&str> {
        let i = self.ids.binary_search_by_key(&position, |(_, p)| *p).ok()?;
        self.ids.get(i).map(|(id, _)| self.text(id))
    }
}

/// Reads the idx of the sealed segment starting at `first` and checks it against the
/// segment; `Err` says why it is not usable.
pub(super) fn read(dir: &Path, first: u64, segment: &File) -> Result<Arc<IdxFile>, String> {
    let bytes = std::fs::read(dir.join(idx_name(first))).map_err(|e| e.to_string())?;
    let segment_len = segment.metadata().map_err(|e| e.to_string())?.len();
    let idx = parse(bytes, first, segment_len)?;
    spot_check(&idx, segment)?;
    Ok(Arc::new(idx))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).ok_or("length overflow")?;
        let slice = self.bytes.get(self.at..end).ok_or("truncated")?;
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let slice = self.take(N)?;
        slice.try_into().map_err(|_| "truncated".to_owned())
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, String> {
        self.array().map(u64::from_le_bytes)
    }

    /// `n` little-endian u32s, and their byte range.
    fn words(&mut self, n: usize) -> Result<(&'a [[u8; 4]], Range<usize>), String> {
        let start = self.at;
        let slice = self.take(n.checked_mul(4).ok_or("length overflow")?)?;
        Ok((slice.as_chunks::<4>().0, start..self.at))
    }

    /// A u16-length-prefixed UTF-8 string, and its byte range.
    fn text(&mut self) -> Result<(&'a str, Range<usize>), String> {
        let len = u16::from_le_bytes(self.array()?);
        let start = self.at;
        let text = std::str::from_utf8(self.take(usize::from(len))?)
            .map_err(|_| "bad UTF-8".to_owned())?;
        Ok((text, start..self.at))
    }
}

fn word(raw: [u8; 4]) -> u32 {
    u32::from_le_bytes(raw)
}

/// Checks the checksum and the structure, and that the idx describes this segment.
fn parse(bytes: Vec<u8>, first: u64, segment_len: u64) -> Result<IdxFile, String> {
    let (content, crc) = bytes.split_last_chunk::<4>().ok_or("truncated")?;
    if crc32fast::hash(content) != u32::from_le_bytes(*crc) {
        return Err("checksum mismatch".to_owned());
    }
    let mut r = Reader {
        bytes: content,
        at: 0,
    };
    if r.take(MAGIC.len())? != MAGIC {
        return Err("not an idx file".to_owned());
    }
    let idx_first = r.u64()?;
    if idx_first != first {
        return Err(format!("describes a segment starting at {idx_first}"));
    }
    let len = r.u64()?;
    if len != segment_len {
        return Err(format!(
            "describes a segment of {len} bytes, the file has {segment_len}"
        ));
    }
    let count = r.u32()? as usize;
    let stream_count = r.u32()?;
    let id_count = r.u32()?;
    let last_crc = r.u32()?;
    let max_time = i64::from_le_bytes(r.array()?);
    let (raw, offsets) = r.words(count)?;
    let sound = match (raw.first(), raw.last()) {
        (None, None) => len == SEGMENT_HEADER as u64,
        (Some(start), Some(last)) => {
            word(*start) as usize == SEGMENT_HEADER
                && u64::from(word(*last)) < len
                && raw.windows(2).all(|w| word(w[0]) < word(w[1]))
        }
        _ => false,
    };
    if !sound {
        return Err("record offsets out of order or out of range".to_owned());
    }
    let mut streams = Vec::with_capacity(stream_count as usize);
    let mut previous = "";
    for _ in 0..stream_count {
        let (stream, name) = r.text()?;
        let n = r.u32()? as usize;
        let (raw, positions) = r.words(n)?;
        let ascending = raw.windows(2).all(|w| word(w[0]) < word(w[1]));
        let in_range = raw.last().is_some_and(|p| (word(*p) as usize) < count);
        if stream <= previous || !ascending || !in_range {
            return Err(format!("stream `{stream}` out of order or out of range"));
        }
        previous = stream;
        streams.push((name, positions));
    }
    let mut ids: Vec<(Range<usize>, u64)> = Vec::with_capacity(id_count as usize);
    for _ in 0..id_count {
        let (id, range) = r.text()?;
        let position = first + u64::from(r.u32()?);
        let after = ids.last().is_none_or(|(_, p)| *p < position);
        if id.is_empty() || position - first >= count as u64 || !after {
            return Err(format!("id `{id}` out of order or out of range"));
        }
        ids.push((range, position));
    }
    if r.at != content.len() {
        return Err("trailing bytes".to_owned());
    }
    Ok(IdxFile {
        bytes,
        first,
        len,
        max_time,
        last_crc,
        count,
        offsets,
        streams,
        ids,
    })
}

/// Reads back a few frames at recorded offsets: they must decode, sit at their
/// positions, have the recorded lengths, streams and ids and a time within the
/// recorded maximum; the last must carry the recorded checksum.
fn spot_check(idx: &IdxFile, segment: &File) -> Result<(), String> {
    let Some(last) = idx.count.checked_sub(1) else {
        return Ok(());
    };
    let mut samples: Vec<usize> = (0..SPOT_CHECKS)
        .map(|k| k * last / (SPOT_CHECKS - 1))
        .collect();
    samples.dedup();
    let mut buffer = Vec::new();
    for i in samples {
        let start = idx.offset(i).ok_or("no such record")?;
        let end = idx.offset(i + 1).unwrap_or(idx.len);
        let size = usize::try_from(end - start).map_err(|e| e.to_string())?;
        if size > FRAME_HEADER + MAX_BODY {
            return Err(format!("record {i} is too long"));
        }
        buffer.resize(size, 0);
        segment
            .read_exact_at(&mut buffer, start)
            .map_err(|e| e.to_string())?;
        let (frame, used) = format::decode_frame_ref(&buffer)
            .map_err(|e| format!("{e:?} frame at byte {start} of the segment"))?;
        let position = idx.first + i as u64;
        let agrees = used == size
            && frame.position == position
            && frame.local_time() <= idx.max_time
            && (frame.stream.is_empty() || idx.stream_has(frame.stream, position))
            && idx.id_of(position).unwrap_or_default() == frame.dedup_id()
            && (i != last || frame.crc == idx.last_crc);
        if !agrees {
            return Err(format!(
                "the segment's record at byte {start} differs from the recorded one"
            ));
        }
    }
    Ok(())
}

/// Byte offsets of a segment's records.
#[derive(Debug)]
pub(super) enum Offsets {
    /// From a scan, or appended by the writer.
    Owned(Vec<u64>),
    /// In the segment's idx.
    Idx(Arc<IdxFile>),
}

impl Offsets {
    pub fn len(&self) -> usize {
        match self {
            Offsets::Owned(offsets) => offsets.len(),
            Offsets::Idx(idx) => idx.count(),
        }
    }

    pub fn get(&self, i: usize) -> Option<u64> {
        match self {
            Offsets::Owned(offsets) => offsets.get(i).copied(),
            Offsets::Idx(idx) => idx.offset(i),
        }
    }

    /// Appends offsets (the writer only appends to the active segment, whose offsets
    /// are owned).
    pub fn append(&mut self, more: &mut Vec<u64>) {
        if let Offsets::Idx(idx) = self {
            let owned = (0..idx.count()).filter_map(|i| idx.offset(i)).collect();
            *self = Offsets::Owned(owned);
        }
        if let Offsets::Owned(offsets) = self {
            offsets.append(more);
        }
    }
}

/// Where one segment's positions of one stream are, during recovery.
pub(super) enum Part<'a> {
    /// In an idx: u32s relative to its first position.
    Idx(&'a Arc<IdxFile>, Range<usize>),
    /// From a scan.
    Scanned(&'a [u64]),
}

impl Part<'_> {
    fn len(&self) -> usize {
        match self {
            Part::Idx(_, range) => range.len() / 4,
            Part::Scanned(positions) => positions.len(),
        }
    }

    fn append_to(&self, out: &mut Vec<u64>) {
        match self {
            Part::Idx(idx, range) => {
                let base = idx.first;
                out.extend(idx.words(range).iter().map(|p| base + u64::from(word(*p))));
            }
            Part::Scanned(positions) => out.extend_from_slice(positions),
        }
    }
}

/// Fewest positions per segment, on average, for which a stream keeps chunks into the
/// idx bytes rather than its own copy (a chunk costs as much as four positions).
const MIN_CHUNK: usize = 4;

/// A run of positions of one stream in one sealed segment.
#[derive(Debug, Clone)]
enum Chunk {
    /// u32s (a range of the idx bytes) relative to the idx's first position.
    Idx(Arc<IdxFile>, Range<usize>),
    /// From a scan.
    Owned(Arc<[u64]>),
}

impl Chunk {
    fn len(&self) -> usize {
        match self {
            Chunk::Idx(_, range) => range.len() / 4,
            Chunk::Owned(positions) => positions.len(),
        }
    }

    /// Positions `skip..skip + take` of the chunk, appended to `out`.
    fn copy_to(&self, skip: usize, take: usize, out: &mut Vec<u64>) {
        match self {
            Chunk::Idx(idx, range) => {
                let base = idx.first;
                out.extend(
                    idx.words(range)
                        .iter()
                        .skip(skip)
                        .take(take)
                        .map(|p| base + u64::from(word(*p))),
                );
            }
            Chunk::Owned(positions) => {
                out.extend(positions.iter().skip(skip).take(take));
            }
        }
    }
}

/// The positions of one stream, ascending: chunks of sealed segments (shared with their
/// idx), then the positions appended since, owned.
#[derive(Debug, Default)]
pub(super) struct StreamPositions {
    chunks: Vec<Chunk>,
    /// Positions in `chunks`.
    chunked: usize,
    tail: Vec<u64>,
}

impl StreamPositions {
    /// Events in the stream.
    pub fn len(&self) -> usize {
        self.chunked + self.tail.len()
    }

    /// Appends a position (larger than every one before).
    pub fn push(&mut self, position: u64) {
        self.tail.push(position);
    }

    /// Up to `max` positions from stream version `from`.
    pub fn range(&self, from: usize, max: usize) -> Vec<u64> {
        let mut out = Vec::with_capacity(max.min(self.len().saturating_sub(from)));
        let mut skip = from;
        for chunk in &self.chunks {
            let left = max - out.len();
            if left == 0 {
                return out;
            }
            let len = chunk.len();
            if skip >= len {
                skip -= len;
                continue;
            }
            chunk.copy_to(skip, left, &mut out);
            skip = 0;
        }
        let left = max - out.len();
        out.extend(self.tail.iter().skip(skip).take(left));
        out
    }
}

/// Every stream of the log: a dense id per name, and the positions of each id.
///
/// Ids are internal and not stable across restarts: recovery numbers the streams it
/// finds, then the writer numbers new streams in the order it first writes them. The
/// writer keeps the same numbering (it starts from this index and publishes new names
/// in order), so a published group carries `(id, position)` pairs and costs no name
/// lookup per record.
#[derive(Debug, Default)]
pub(super) struct StreamIndex {
    ids: Map<Arc<str>, u32>,
    /// By id: the name and positions.
    streams: Vec<(Arc<str>, StreamPositions)>,
}

impl StreamIndex {
    /// The positions of the stream `name`, if it has any.
    pub fn get(&self, name: &str) -> Option<&StreamPositions> {
        let id = *self.ids.get(name)?;
        self.streams.get(id as usize).map(|(_, p)| p)
    }

    /// Streams known.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Adds a stream under the next id, which it returns; `None` when the name is
    /// already known or the ids are exhausted.
    pub fn add(&mut self, name: Arc<str>, positions: StreamPositions) -> Option<u32> {
        let id = u32::try_from(self.streams.len()).ok()?;
        match self.ids.entry(name) {
            std::collections::hash_map::Entry::Occupied(_) => None,
            std::collections::hash_map::Entry::Vacant(slot) => {
                self.streams.push((slot.key().clone(), positions));
                slot.insert(id);
                Some(id)
            }
        }
    }

    /// Appends a position to stream `id` (a no-op for an unknown id).
    pub fn push(&mut self, id: u32, position: u64) {
        if let Some((_, positions)) = self.streams.get_mut(id as usize) {
            positions.push(position);
        }
    }

    /// Every stream by id: its name and how many events it has.
    pub fn counts(&self) -> impl Iterator<Item = (&Arc<str>, u64)> {
        self.streams.iter().map(|(n, p)| (n, p.len() as u64))
    }
}

/// One segment's streams, ascending by name (each name once).
pub(super) type StreamList<'a> = Vec<(&'a str, Part<'a>)>;

/// The stream index of consecutive sealed segments and the active one, from their
/// stream lists in segment order: a k-way merge by name, so no name is hashed more
/// than once and no position of a sealed segment with an idx is copied (its chunk
/// points into the idx bytes). Positions of scanned sealed segments are copied into
/// chunks, the active segment's into the owned tail.
pub(super) fn merge_streams(sealed: &[StreamList<'_>], active: &StreamList<'_>) -> StreamIndex {
    let lists: Vec<&StreamList<'_>> = sealed.iter().chain([active]).collect();
    let active_list = sealed.len();
    let capacity = lists.iter().map(|l| l.len()).max().unwrap_or(0);
    let mut streams = StreamIndex {
        ids: Map::with_capacity_and_hasher(capacity, Default::default()),
        streams: Vec::with_capacity(capacity),
    };
    let mut cursors = vec![0usize; lists.len()];
    // Equal names pop in segment order: the heap orders by (name, segment).
    let mut heap: BinaryHeap<Reverse<(&str, usize)>> = lists
        .iter()
        .enumerate()
        .filter_map(|(i, list)| list.first().map(|(name, _)| Reverse((*name, i))))
        .collect();
    let mut group = Vec::new();
    let mut parts: Vec<(usize, &Part<'_>)> = Vec::new();
    while let Some(Reverse((name, i))) = heap.pop() {
        group.clear();
        group.push(i);
        while let Some(Reverse((next, j))) = heap.peek()
            && *next == name
        {
            group.push(*j);
            heap.pop();
        }
        parts.clear();
        for &j in &group {
            let list = lists[j];
            if let Some((_, part)) = list.get(cursors[j]) {
                parts.push((j, part));
            }
            cursors[j] += 1;
            if let Some((next, _)) = list.get(cursors[j]) {
                heap.push(Reverse((next, j)));
            }
        }
        let total: usize = parts.iter().map(|(_, part)| part.len()).sum();
        let mut stream = StreamPositions::default();
        if parts.len() * MIN_CHUNK > total {
            // Sparse in many segments: chunks would cost more than the positions.
            stream.tail.reserve_exact(total);
            for (_, part) in &parts {
                part.append_to(&mut stream.tail);
            }
        } else {
            stream.chunks.reserve_exact(parts.len());
            for (j, part) in &parts {
                match part {
                    Part::Scanned(positions) if *j == active_list => {
                        stream.tail = positions.to_vec();
                    }
                    Part::Scanned(positions) => {
                        stream.chunked += positions.len();
                        stream.chunks.push(Chunk::Owned(Arc::from(*positions)));
                    }
                    Part::Idx(idx, range) => {
                        stream.chunked += part.len();
                        stream
                            .chunks
                            .push(Chunk::Idx(Arc::clone(idx), range.clone()));
                    }
                }
            }
        }
        // Names pop in ascending order, each once: `add` cannot refuse one.
        streams.add(Arc::from(name), stream);
    }
    streams
}
