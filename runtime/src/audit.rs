//! The audit trail: who changed what a node does, and when.
//!
//! Every admin action is appended, once it took effect, as one JSON line to
//! `<data>/audit.jsonl` (mode 0600, synced): deploys that brought something, promotes,
//! retires and link resets (by the node, with the caller's token id, name and role,
//! or its address when the node has no tokens), and token creations and revocations
//! (by `datamesh token`). `datamesh audit --data DIR` prints it. It is a file beside
//! the log and not records in it, so that an admin action never moves the positions
//! of events (the first event after a deploy is still position 0); the file is as
//! private as the log.
//!
//! Invariant: a line is written only after its action took effect; a failure to write
//! it is logged and does not undo the action.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The audit file of a data directory.
pub fn audit_file(data: &Path) -> PathBuf {
    data.join("audit.jsonl")
}

/// Appends one entry (`action`, `by`, `details`, and the time now) and syncs it.
///
/// # Errors
/// I/O errors.
pub fn record(
    data: &Path,
    action: &str,
    by: serde_json::Value,
    details: serde_json::Value,
) -> std::io::Result<()> {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    let line = serde_json::json!({
        "time": datamesh_stdlib::time::format_rfc3339(micros),
        "action": action,
        "by": by,
        "details": details,
    });
    let mut bytes = line.to_string().into_bytes();
    bytes.push(b'\n');
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(audit_file(data))?;
    // One write of the whole line: appends of whole lines do not interleave.
    file.write_all(&bytes)?;
    file.sync_data()
}

/// Every entry, oldest first (a line that does not parse, as a crash may leave the
/// last one, is skipped).
///
/// # Errors
/// I/O errors other than a missing file.
pub fn read(data: &Path) -> std::io::Result<Vec<serde_json::Value>> {
    let text = match std::fs::read_to_string(audit_file(data)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}
