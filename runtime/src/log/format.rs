//! The on-disk record format of the log.
//!
//! A segment file is a sequence of frames: `len: u32 LE | crc32: u32 LE | body`, where
//! the checksum covers the body. The body holds one event:
//! `position u64 | time i64 | stream_version u64 | type (u16 len + bytes) |
//! stream (u16 + bytes) | id (u16 + bytes) | payload (u32 len + bytes)`, little endian.
//!
//! Invariant: [`decode_frame`] accepts a frame only if its length fits the bytes
//! available and its checksum matches; anything else is a torn or corrupt tail, never
//! a record.

/// Bytes before the body: length and checksum.
pub const FRAME_HEADER: usize = 8;

/// The largest body a frame may carry (guards against a corrupt length).
pub const MAX_BODY: usize = 64 << 20;

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
    let body_len = out.len() - start - FRAME_HEADER;
    let crc = crc32fast::hash(&out[start + FRAME_HEADER..]);
    out[start..start + 4]
        .copy_from_slice(&u32::try_from(body_len).unwrap_or(u32::MAX).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
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
    /// The frame's checksum (of its body).
    pub crc: u32,
}

impl FrameRef<'_> {
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
    let header = bytes.get(..FRAME_HEADER).ok_or(FrameError::Incomplete)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 || len > MAX_BODY {
        return Err(FrameError::Corrupt);
    }
    let body = bytes
        .get(FRAME_HEADER..FRAME_HEADER + len)
        .ok_or(FrameError::Incomplete)?;
    if crc32fast::hash(body) != crc {
        return Err(FrameError::Corrupt);
    }
    let frame = decode_body(body, crc).ok_or(FrameError::Corrupt)?;
    Ok((frame, FRAME_HEADER + len))
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
    (cursor.at == body.len()).then_some(FrameRef {
        position,
        time,
        stream_version,
        event_type,
        stream,
        id,
        payload,
        crc,
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
        }
    }

    #[test]
    fn round_trips() {
        let mut buf = Vec::new();
        encode_frame(&record(), &mut buf);
        assert_eq!(decode_frame(&buf), Ok((record(), buf.len())));
        let (frame, used) = decode_frame_ref(&buf).expect("borrowed decode");
        assert_eq!((frame.to_record(), used), (record(), buf.len()));
        assert_eq!(frame.crc.to_le_bytes(), buf[4..8]);
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
