//! The on-disk record format of the log.
//!
//! A segment file starts with a [`SEGMENT_HEADER`]-byte header, then holds a sequence
//! of frames. The header, little endian:
//!
//! ```text
//! magic "DMLOGSEG" | format version u32 | flags u32 (0) | log identity u128 |
//! first position u64 | crc32 u32 of the 40 bytes before it | 4 zero bytes
//! ```
//!
//! The format version lets a later release refuse (or convert) what it cannot read,
//! and this one refuse a newer log with a clear message instead of misreading it. The
//! log identity is random, chosen when the log is created and carried by each of its
//! segments: a segment of another log is refused, and whatever is derived from the log
//! (projection checkpoints, a peer's import position) can tell whether it belongs to
//! this log.
//!
//! A frame is `len: u32 LE | crc32: u32 LE | body`. The low 27 bits of `len` are the
//! body's length; its top bit ([`GROUP_START`]) marks the first frame of a group (the
//! records one `write` and one `fdatasync` made durable together) and the next one
//! ([`GROUP_END`], format 2) its last frame. The checksum covers the length word and
//! the body, so a flipped length or flag is detected too. The body holds one event:
//! `position u64 | time i64 | stream_version u64 | type (u16 len + bytes) | stream
//! (u16 len + bytes) | id (u16 len + bytes) | payload (u32 len + bytes)`, and in format 2, for an
//! event imported from another node, `origin (u16 len + bytes)`: the names of the
//! nodes it passed through, comma-separated, the node it was first written on first.
//! A local event has no origin field, so its frame is the same in both formats.
//!
//! Group starts are what tell a torn tail from damage: only the last group can be
//! partly on disk after a crash (the writer syncs each group before it writes the
//! next), so an intact frame that starts a group after a damaged frame proves the
//! damaged one was in an earlier, synced group: the damage is not a torn write.
//! Group ends make a group atomic: recovery keeps the last segment up to the last frame
//! that ends a group, so the intact first frames of a group the crash interrupted are
//! cut with the rest of it (a batch is all in the log or none of it, and an import's
//! events and its link position are too).
//!
//! Invariant: [`decode_frame`] accepts a frame only if its length fits the bytes
//! available and its checksum matches; anything else is a torn or corrupt tail, never
//! a record.

/// Bytes before the body: length and checksum.
pub const FRAME_HEADER: usize = 8;

/// The largest body a frame may carry (guards against a corrupt length). Every limit a
/// node is configured with must keep an event's frame within it.
pub const MAX_BODY: usize = 64 << 20;

/// Bytes of a body besides the payload and the three strings.
pub const BODY_FIXED: usize = 8 + 8 + 8 + 2 + 2 + 2 + 4;

/// The flag in a frame's length word that marks the first frame of a group.
pub const GROUP_START: u32 = 1 << 31;

/// The flag in a frame's length word that marks the last frame of a group (format 2).
pub const GROUP_END: u32 = 1 << 30;

/// The bits of a frame's length word that hold the body's length.
const LEN_MASK: u32 = (1 << 27) - 1;

/// Bytes of a segment's header; its first frame starts there.
pub const SEGMENT_HEADER: usize = 48;

/// What a segment file starts with.
pub const SEGMENT_MAGIC: &[u8; 8] = b"DMLOGSEG";

/// The log format this build writes. It reads format 1 too (no group ends, no
/// origins).
pub const FORMAT_VERSION: u32 = 2;

/// The oldest log format this build reads.
pub const OLDEST_FORMAT: u32 = 1;

/// A segment's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format version.
    pub version: u32,
    /// The identity of the log the segment belongs to.
    pub identity: u128,
    /// Position of its first record.
    pub first: u64,
}

/// Why a segment's header is not one this build can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Shorter than a header.
    #[error("the file is shorter than a segment header ({0} bytes)")]
    Short(usize),
    /// Not a DataMesh segment (or one written before format versions existed).
    #[error("not a DataMesh log segment (no `DMLOGSEG` header)")]
    NotASegment,
    /// The header's checksum does not match.
    #[error("the segment header is damaged (checksum mismatch)")]
    Corrupt,
    /// Written by a newer release.
    #[error(
        "written in log format {0}, newer than this build's format {FORMAT_VERSION}: run the release that wrote it (or a newer one)"
    )]
    Newer(u32),
    /// A format version this build never wrote.
    #[error("unknown log format version {0}")]
    Unknown(u32),
}

/// The header of a segment of log `identity` whose first record is `first`.
pub fn encode_segment_header(identity: u128, first: u64) -> [u8; SEGMENT_HEADER] {
    let mut out = [0u8; SEGMENT_HEADER];
    out[..8].copy_from_slice(SEGMENT_MAGIC);
    out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[16..32].copy_from_slice(&identity.to_le_bytes());
    out[32..40].copy_from_slice(&first.to_le_bytes());
    let crc = crc32fast::hash(&out[..40]);
    out[40..44].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Reads and checks a segment header.
///
/// # Errors
/// See [`HeaderError`].
pub fn decode_segment_header(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
    let header = bytes
        .get(..SEGMENT_HEADER)
        .ok_or(HeaderError::Short(bytes.len()))?;
    if &header[..8] != SEGMENT_MAGIC {
        return Err(HeaderError::NotASegment);
    }
    let word = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    if crc32fast::hash(&header[..40]) != word(40) {
        return Err(HeaderError::Corrupt);
    }
    let version = word(8);
    if version > FORMAT_VERSION {
        return Err(HeaderError::Newer(version));
    }
    if version < OLDEST_FORMAT {
        return Err(HeaderError::Unknown(version));
    }
    let mut identity = [0u8; 16];
    identity.copy_from_slice(&header[16..32]);
    let mut first = [0u8; 8];
    first.copy_from_slice(&header[32..40]);
    Ok(SegmentHeader {
        version,
        identity: u128::from_le_bytes(identity),
        first: u64::from_le_bytes(first),
    })
}

/// One event as stored in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Log position (dense, from 0).
    pub position: u64,
    /// Append time, µs since the epoch.
    pub time: i64,
    /// Version of the event within its stream (0-based); 0 when it has no stream.
    pub stream_version: u64,
    /// Event type.
    pub event_type: String,
    /// Stream, "" when none.
    pub stream: String,
    /// Client id, "" when none.
    pub id: String,
    /// Payload: JSON text.
    pub payload: Vec<u8>,
    /// For an event imported from another node, the nodes it passed through
    /// (comma-separated, the one it was first written on first); "" for a local event.
    pub origin: String,
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than the frame needs: a torn write at the tail.
    Incomplete,
    /// The length or checksum is wrong: corruption.
    Corrupt,
}

/// Appends the frame for `record` to `out`.
pub fn encode_frame(record: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    out.extend_from_slice(&record.position.to_le_bytes());
    out.extend_from_slice(&record.time.to_le_bytes());
    out.extend_from_slice(&record.stream_version.to_le_bytes());
    for text in [&record.event_type, &record.stream, &record.id] {
        let len = u16::try_from(text.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&text.as_bytes()[..usize::from(len)]);
    }
    let len = u32::try_from(record.payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&record.payload);
    if !record.origin.is_empty() {
        let len = u16::try_from(record.origin.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&record.origin.as_bytes()[..usize::from(len)]);
    }
    let body_len = out.len() - start - FRAME_HEADER;
    out[start..start + 4]
        .copy_from_slice(&u32::try_from(body_len).unwrap_or(u32::MAX).to_le_bytes());
    seal_frame(&mut out[start..]);
}

/// Marks the frame at the start of `frame` as the first of its group (and reseals it).
pub fn mark_group_start(frame: &mut [u8]) {
    set_flag(frame, GROUP_START);
}

/// Marks the frame at the start of `frame` as the last of its group (and reseals it).
pub fn mark_group_end(frame: &mut [u8]) {
    set_flag(frame, GROUP_END);
}

fn set_flag(frame: &mut [u8], flag: u32) {
    if let Some(word) = frame.get_mut(..4) {
        let len = u32::from_le_bytes([word[0], word[1], word[2], word[3]]) | flag;
        word.copy_from_slice(&len.to_le_bytes());
        seal_frame(frame);
    }
}

/// Writes the checksum of the frame at the start of `frame` (its length word and body).
fn seal_frame(frame: &mut [u8]) {
    let Some(word) = frame.get(..4) else { return };
    let len = (u32::from_le_bytes([word[0], word[1], word[2], word[3]]) & LEN_MASK) as usize;
    let Some(body) = frame.get(FRAME_HEADER..FRAME_HEADER + len) else {
        return;
    };
    let crc = frame_crc([frame[0], frame[1], frame[2], frame[3]], body);
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// The checksum of a frame: its length word, then its body.
fn frame_crc(len_word: [u8; 4], body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len_word);
    hasher.update(body);
    hasher.finalize()
}

/// One record borrowed from the bytes of its frame, with the frame's checksum: what
/// recovery needs, without copying strings or the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef<'a> {
    /// Log position.
    pub position: u64,
    /// Append time, µs since the epoch.
    pub time: i64,
    /// Version within its stream.
    pub stream_version: u64,
    /// Event type.
    pub event_type: &'a str,
    /// Stream, "" when none.
    pub stream: &'a str,
    /// Client id, "" when none.
    pub id: &'a str,
    /// Payload.
    pub payload: &'a [u8],
    /// The nodes an imported event passed through ("" for a local event).
    pub origin: &'a str,
    /// The frame's checksum.
    pub crc: u32,
    /// Whether the frame is the first of its group.
    pub group_start: bool,
    /// Whether the frame is the last of its group (format 2).
    pub group_end: bool,
}

impl<'a> FrameRef<'a> {
    /// The id the log deduplicates by: a local event's id, "" for an imported event
    /// (whose id names the peer event it came from).
    pub fn dedup_id(&self) -> &'a str {
        if self.origin.is_empty() { self.id } else { "" }
    }

    /// The record's time as the log's clock counts it: a local event's append time;
    /// `i64::MIN` for an imported event, whose time is the peer's.
    pub fn local_time(&self) -> i64 {
        if self.origin.is_empty() {
            self.time
        } else {
            i64::MIN
        }
    }

    /// The owned record.
    pub fn to_record(self) -> Record {
        Record {
            position: self.position,
            time: self.time,
            stream_version: self.stream_version,
            event_type: self.event_type.to_owned(),
            stream: self.stream.to_owned(),
            id: self.id.to_owned(),
            payload: self.payload.to_vec(),
            origin: self.origin.to_owned(),
        }
    }
}

/// Decodes the frame at the start of `bytes`; returns the record and the frame length.
///
/// # Errors
/// [`FrameError::Incomplete`] when the bytes end inside the frame, [`FrameError::Corrupt`]
/// when the checksum or the structure is wrong.
pub fn decode_frame(bytes: &[u8]) -> Result<(Record, usize), FrameError> {
    decode_frame_ref(bytes).map(|(frame, used)| (frame.to_record(), used))
}

/// As [`decode_frame`], borrowing from `bytes`: accepts exactly the same frames.
///
/// # Errors
/// As [`decode_frame`].
pub fn decode_frame_ref(bytes: &[u8]) -> Result<(FrameRef<'_>, usize), FrameError> {
    let (flags, body, crc) = split_frame(bytes)?;
    if frame_crc(flags.to_le_bytes(), body) != crc {
        return Err(FrameError::Corrupt);
    }
    decode_split(flags, body, crc)
}

/// As [`decode_frame_ref`] for bytes it accepted before and that have not changed since
/// (a [`super::Frames`] chunk): the checksum is not computed again.
///
/// # Errors
/// As [`decode_frame_ref`], except that a wrong checksum goes unnoticed.
pub(super) fn decode_verified(bytes: &[u8]) -> Result<(FrameRef<'_>, usize), FrameError> {
    let (flags, body, crc) = split_frame(bytes)?;
    decode_split(flags, body, crc)
}

/// The length word (with its flags), the body and the stored checksum of the frame at
/// the start of `bytes`, after checking the length's bounds.
fn split_frame(bytes: &[u8]) -> Result<(u32, &[u8], u32), FrameError> {
    let header = bytes.get(..FRAME_HEADER).ok_or(FrameError::Incomplete)?;
    let flags = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    if flags & !(LEN_MASK | GROUP_START | GROUP_END) != 0 {
        return Err(FrameError::Corrupt);
    }
    let len = (flags & LEN_MASK) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if !(BODY_FIXED..=MAX_BODY).contains(&len) {
        return Err(FrameError::Corrupt);
    }
    let body = bytes
        .get(FRAME_HEADER..FRAME_HEADER + len)
        .ok_or(FrameError::Incomplete)?;
    Ok((flags, body, crc))
}

fn decode_split(flags: u32, body: &[u8], crc: u32) -> Result<(FrameRef<'_>, usize), FrameError> {
    let mut frame = decode_body(body, crc).ok_or(FrameError::Corrupt)?;
    frame.group_start = flags & GROUP_START != 0;
    frame.group_end = flags & GROUP_END != 0;
    Ok((frame, FRAME_HEADER + body.len()))
}

fn decode_body(body: &[u8], crc: u32) -> Option<FrameRef<'_>> {
    let mut cursor = Cursor { bytes: body, at: 0 };
    let position = u64::from_le_bytes(cursor.take(8)?.try_into().ok()?);
    let time = i64::from_le_bytes(cursor.take(8)?.try_into().ok()?);
    let stream_version = u64::from_le_bytes(cursor.take(8)?.try_into().ok()?);
    let mut text = || -> Option<&str> {
        let len = u16::from_le_bytes(cursor.take(2)?.try_into().ok()?);
        std::str::from_utf8(cursor.take(usize::from(len))?).ok()
    };
    let event_type = text()?;
    let stream = text()?;
    let id = text()?;
    let len = u32::from_le_bytes(cursor.take(4)?.try_into().ok()?) as usize;
    let payload = cursor.take(len)?;
    let origin = if cursor.at == body.len() {
        ""
    } else {
        let len = u16::from_le_bytes(cursor.take(2)?.try_into().ok()?);
        std::str::from_utf8(cursor.take(usize::from(len))?)
            .ok()
            .filter(|o| !o.is_empty())?
    };
    (cursor.at == body.len()).then_some(FrameRef {
        position,
        time,
        stream_version,
        event_type,
        stream,
        id,
        payload,
        origin,
        crc,
        group_start: false,
        group_end: false,
    })
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            position: 7,
            time: 1_700_000_000_000_000,
            stream_version: 2,
            event_type: "Deposited".into(),
            stream: "account-1".into(),
            id: "e-7".into(),
            payload: br#"{"amount":5}"#.to_vec(),
            origin: String::new(),
        }
    }

    #[test]
    fn an_imported_event_carries_its_origin_and_a_local_one_stays_format_1() {
        let local = record();
        let mut buf = Vec::new();
        encode_frame(&local, &mut buf);
        // A local event's frame is what format 1 wrote: no origin field.
        assert_eq!(buf.len(), FRAME_HEADER + BODY_FIXED + 9 + 9 + 3 + 12);
        let imported = Record {
            origin: "payments,bank".into(),
            ..record()
        };
        let mut buf = Vec::new();
        encode_frame(&imported, &mut buf);
        assert_eq!(decode_frame(&buf), Ok((imported, buf.len())));
        mark_group_end(&mut buf);
        let (frame, _) = decode_frame_ref(&buf).expect("marked frame");
        assert!(frame.group_end && !frame.group_start);
        assert_eq!(frame.origin, "payments,bank");
        // An unknown flag bit is damage, not a longer frame.
        buf[3] ^= 0x10;
        seal_frame(&mut buf);
        assert_eq!(decode_frame(&buf).map(|_| ()), Err(FrameError::Corrupt));
    }

    #[test]
    fn round_trips() {
        let mut buf = Vec::new();
        encode_frame(&record(), &mut buf);
        assert_eq!(decode_frame(&buf), Ok((record(), buf.len())));
        let (frame, used) = decode_frame_ref(&buf).expect("borrowed decode");
        assert_eq!((frame.to_record(), used), (record(), buf.len()));
        assert_eq!(frame.crc.to_le_bytes(), buf[4..8]);
        assert!(!frame.group_start);
        mark_group_start(&mut buf);
        let (frame, _) = decode_frame_ref(&buf).expect("marked frame");
        assert!(frame.group_start);
        assert_eq!(frame.to_record(), record());
    }

    #[test]
    fn a_flipped_length_flag_is_caught_by_the_checksum() {
        let mut buf = Vec::new();
        encode_frame(&record(), &mut buf);
        buf[3] ^= 0x80;
        assert_eq!(decode_frame(&buf).map(|_| ()), Err(FrameError::Corrupt));
    }

    #[test]
    fn segment_headers_round_trip_and_refuse_what_they_cannot_read() {
        let header = encode_segment_header(0xfeed_beef << 64 | 7, 1234);
        assert_eq!(
            decode_segment_header(&header),
            Ok(SegmentHeader {
                version: FORMAT_VERSION,
                identity: 0xfeed_beef << 64 | 7,
                first: 1234
            })
        );
        assert_eq!(
            decode_segment_header(&header[..20]),
            Err(HeaderError::Short(20))
        );
        let mut newer = header;
        newer[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let crc = crc32fast::hash(&newer[..40]);
        newer[40..44].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode_segment_header(&newer),
            Err(HeaderError::Newer(FORMAT_VERSION + 1))
        );
        let mut other = header;
        other[0] = b'X';
        assert_eq!(decode_segment_header(&other), Err(HeaderError::NotASegment));
        for i in 8..44 {
            let mut flipped = header;
            flipped[i] ^= 1;
            assert!(
                decode_segment_header(&flipped).is_err(),
                "flip at {i} accepted"
            );
        }
    }

    #[test]
    fn torn_and_corrupt_frames_are_rejected() {
        let mut buf = Vec::new();
        encode_frame(&record(), &mut buf);
        for cut in 0..buf.len() {
            assert_eq!(
                decode_frame(&buf[..cut]).map(|_| ()),
                Err(FrameError::Incomplete),
                "cut at {cut}"
            );
        }
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(decode_frame(&bad).is_err(), "flipped byte {i} accepted");
        }
    }
}
