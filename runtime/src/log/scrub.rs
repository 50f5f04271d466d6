//! The background scrub: verifies every frame of the sealed segments that recovery
//! loaded from their idx files.
//!
//! Loading an idx checks its own checksum and spot-checks a few frames of its segment,
//! which keeps a restart fast (W7: 10 M events in a fraction of a second) but leaves
//! most frames of a sealed segment unverified. Right after the log opens, one
//! low-priority thread reads each such segment sequentially and verifies every frame
//! against what the idx recorded (count, positions, length). Damage it finds is logged
//! as an error and kept in [`super::Log::damage`] (the node's status reports it); the
//! damaged records stay unreadable ([`super::LogError::Corrupt`] on read), so nothing
//! downstream folds or exports a record that does not verify. Appends go on: a
//! damaged old record does not make new ones less durable.
//!
//! Invariant: the scrub only reads; it never changes a file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{LogError, Shared, index, segment_name};

/// What recovery learned of a sealed segment from its idx, for the scrub to verify.
#[derive(Debug, Clone, Copy)]
pub(super) struct Expect {
    /// First position.
    pub first: u64,
    /// Records the idx lists.
    pub records: u64,
    /// Segment length the idx records.
    pub len: u64,
}

/// Starts the scrub of `segments` on its own thread (or marks the scrub finished when
/// there is nothing to verify).
pub(super) fn start(dir: &Path, shared: &Arc<Shared>, segments: Vec<Expect>) {
    if segments.is_empty() {
        shared.scrubbed.store(true, Ordering::Release);
        return;
    }
    let dir: PathBuf = dir.to_owned();
    let weak = Arc::downgrade(shared);
    let spawned = std::thread::Builder::new()
        .name("datamesh-log-scrub".to_owned())
        .spawn(move || {
            for expect in segments {
                // Stop once the log is gone.
                let Some(shared) = weak.upgrade() else { return };
                if let Some(damage) = verify(&dir, expect)
                    && super::note_damage(&shared, &damage)
                {
                    tracing::error!(error = %damage, "the log scrub found damage in a sealed segment; reads of the damaged records fail");
                }
            }
            if let Some(shared) = weak.upgrade() {
                shared.scrubbed.store(true, Ordering::Release);
                tracing::debug!("the log scrub verified every sealed segment");
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the log scrub; sealed segments are verified only when read");
    }
}

/// Whether the scrub has finished.
pub(super) fn finished(shared: &Shared) -> bool {
    shared.scrubbed.load(Ordering::Acquire)
}

/// Scans one sealed segment; the damage, if any.
fn verify(dir: &Path, expect: Expect) -> Option<LogError> {
    let name = segment_name(expect.first);
    let damage = |offset: u64, reason: String| LogError::Corrupt {
        segment: name.clone(),
        offset,
        reason,
    };
    let file = match std::fs::File::open(dir.join(&name)) {
        Ok(file) => file,
        Err(e) => return Some(damage(0, format!("cannot open it to verify: {e}"))),
    };
    let scan = match index::scan(expect.first, &file) {
        Ok(scan) => scan,
        Err(e) => return Some(damage(0, format!("cannot read it to verify: {e}"))),
    };
    let records = scan.segment.offsets.len() as u64;
    if let Some(reason) = scan.stopped {
        return Some(damage(
            scan.segment.len,
            format!(
                "{reason}: position {} and the {} records after it in this sealed segment do not verify",
                expect.first + records,
                expect.records.saturating_sub(records + 1)
            ),
        ));
    }
    (records != expect.records || scan.segment.len != expect.len).then(|| {
        damage(
            scan.segment.len,
            format!(
                "holds {records} records in {} bytes, its idx records {} in {}",
                scan.segment.len, expect.records, expect.len
            ),
        )
    })
}
