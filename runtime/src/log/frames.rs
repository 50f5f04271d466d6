//! A chunk of consecutive log records read in one piece: the bytes of their frames and
//! where each one starts. The engine folds from it, borrowing each record's strings
//! and payload, instead of copying every record into a [`Record`] of its own (which
//! cost an allocation per string, and their frees on another thread, in every rebuild).
//!
//! Invariant: every frame in a `Frames` verified (length, checksum, structure) when it
//! was read, and its bytes do not change after; the `i`-th frame holds position
//! `first + i`.

use super::format::{self, FrameError, FrameRef};
use super::{LogError, Record};

/// Consecutive records of the log, from [`super::Log::read_frames`].
#[derive(Debug, Default)]
pub struct Frames {
    first: u64,
    bytes: Vec<u8>,
    starts: Vec<usize>,
}

impl Frames {
    /// No records yet; the first one pushed holds position `first`.
    pub(super) fn starting_at(first: u64) -> Frames {
        Frames {
            first,
            bytes: Vec::new(),
            starts: Vec::new(),
        }
    }

    /// The position of the first record.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// The position after the last record.
    pub fn end(&self) -> u64 {
        self.first + self.starts.len() as u64
    }

    /// How many records.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Takes the frames in `bytes` (whole frames, back to back), verifying each; stops
    /// at the first that does not verify and returns its offset in `bytes` with the
    /// reason, keeping the ones before it.
    pub(super) fn push_verified(&mut self, bytes: Vec<u8>) -> Result<(), (usize, FrameError)> {
        let base = self.bytes.len();
        if self.bytes.is_empty() {
            self.bytes = bytes;
        } else {
            // Only where a chunk crosses into the next segment.
            self.bytes.extend_from_slice(&bytes);
        }
        let mut at = base;
        while at < self.bytes.len() {
            let rest = self.bytes.get(at..).unwrap_or_default();
            match format::decode_frame_ref(rest) {
                Ok((_, used)) => {
                    self.starts.push(at);
                    at += used;
                }
                Err(e) => {
                    self.bytes.truncate(at);
                    return Err((at - base, e));
                }
            }
        }
        Ok(())
    }

    /// The records, in order, borrowed from the chunk. An item is an error only if a
    /// frame no longer decodes as it did when it verified, which its invariant rules
    /// out; a caller treats it as a record that cannot be read.
    pub fn iter(&self) -> impl Iterator<Item = Result<FrameRef<'_>, LogError>> + '_ {
        (self.first..).zip(&self.starts).map(|(position, &start)| {
            let frame = self.bytes.get(start..).unwrap_or_default();
            format::decode_verified(frame)
                .map(|(frame, _)| frame)
                .map_err(|e| LogError::Corrupt {
                    segment: String::new(),
                    offset: 0,
                    reason: format!("the record at position {position} no longer decodes ({e:?})"),
                })
        })
    }

    /// The records, each copied out of the chunk.
    ///
    /// # Errors
    /// As [`Frames::iter`].
    pub fn to_records(&self) -> Result<Vec<Record>, LogError> {
        self.iter()
            .map(|frame| frame.map(FrameRef::to_record))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(position: u64, payload: &str) -> Vec<u8> {
        let mut out = Vec::new();
        format::encode_frame(
            &Record {
                position,
                time: 1,
                stream_version: 0,
                event_type: "Deposited".into(),
                stream: format!("account-{position}"),
                id: String::new(),
                payload: payload.as_bytes().to_vec(),
                origin: String::new(),
            },
            &mut out,
        );
        out
    }

    #[test]
    fn frames_borrow_every_record_across_pushes() {
        let mut frames = Frames::starting_at(10);
        let mut first = frame(10, "{}");
        first.extend(frame(11, r#"{"a":1}"#));
        frames.push_verified(first).expect("verifies");
        frames
            .push_verified(frame(12, r#"{"b":2}"#))
            .expect("verifies");
        assert_eq!((frames.first(), frames.end(), frames.len()), (10, 13, 3));
        let records = frames.to_records().expect("decodes");
        let positions: Vec<u64> = records.iter().map(|r| r.position).collect();
        assert_eq!(positions, [10, 11, 12]);
        assert_eq!(records[2].stream, "account-12");
        assert_eq!(records[2].payload, br#"{"b":2}"#);
    }

    #[test]
    fn a_frame_that_does_not_verify_ends_the_chunk_and_keeps_the_ones_before() {
        let mut bytes = frame(0, "{}");
        let second = bytes.len();
        bytes.extend(frame(1, r#"{"a":1}"#));
        bytes.extend(frame(2, r#"{"a":2}"#));
        // A flipped bit in the second frame's payload.
        let last = second + frame(1, r#"{"a":1}"#).len() - 2;
        bytes[last] ^= 0x10;
        let mut frames = Frames::starting_at(0);
        let (offset, error) = frames.push_verified(bytes).expect_err("the flip is found");
        assert_eq!((offset, error), (second, FrameError::Corrupt));
        assert_eq!(frames.len(), 1);
        assert_eq!(frames.to_records().expect("decodes")[0].position, 0);
    }
}
