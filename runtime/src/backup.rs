//! `datamesh backup`: a verified copy of a node's data directory, taken while the node
//! runs (or not), that a node can be started on as it is.
//!
//! What is copied is what cannot be recomputed: the log (`log/`), the catalog of
//! deploys, promotions and retirements (`catalog`), the tokens and the audit trail.
//! The projection store is not copied (its files change under a copy): a node started
//! on the backup finds no store, makes one from the catalog, and every projection
//! rebuilds from the log.
//!
//! The log is copied in the order that makes a copy of a running log consistent: the
//! segments are listed once; every one but the newest is sealed, so immutable, and is
//! copied with its idx file; the newest is copied last, whole, zeroed space included.
//! A group the writer was writing during that last copy may be cut short in it; the
//! copy is then opened as a node would open it, which cuts a torn tail back to the
//! last whole group (a group is all in the log or none of it), and read through, every
//! frame verified. The catalog is read as a node reads it at start. So a backup holds
//! every event acknowledged before it started, maybe some acknowledged during it,
//! never part of a group, and a source whose damage a node would refuse is refused
//! here too.
//!
//! Invariant: the source is only read; the target directory is new (or empty) and is
//! removed again when the backup fails.

use std::path::{Path, PathBuf};

use crate::log::{Log, LogConfig, LogError};

/// What a backup copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// The backup's data directory.
    pub out: PathBuf,
    /// Events in the backup's log (one past its last position).
    pub head: u64,
    /// Log segments copied.
    pub segments: usize,
    /// Bytes copied, all files.
    pub bytes: u64,
    /// Bytes of a group cut short in the newest segment, cut from the copy.
    pub torn_bytes: u64,
    /// The other files copied (`catalog`, `tokens.json`, `audit.jsonl`), those present.
    pub files: Vec<String>,
}

/// Why a backup failed. Nothing is left in the target then.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The source is not a node's data directory.
    #[error("{0} is not a data directory of a node (it has no log/)")]
    NotADataDirectory(PathBuf),
    /// The target exists and is not empty.
    #[error("{0} exists and is not empty: a backup goes into a new or empty directory")]
    TargetNotEmpty(PathBuf),
    /// Reading the source or writing the target failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        error: std::io::Error,
    },
    /// The copied log does not open or does not verify.
    #[error("the copied log does not verify: {0}")]
    Log(#[from] LogError),
    /// The copied catalog does not read (a node would refuse to start on it).
    #[error("the copied catalog does not verify: {0}")]
    Catalog(crate::store::StoreError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |error| BackupError::Io {
        path: path.to_owned(),
        error,
    }
}

/// Copies the data directory `data` into `out` (see the module documentation).
///
/// # Errors
/// [`BackupError`]; `out` is removed again, unless it was there before the call.
pub fn backup(data: &Path, out: &Path) -> Result<BackupReport, BackupError> {
    let source_log = data.join("log");
    if !source_log.is_dir() {
        return Err(BackupError::NotADataDirectory(data.to_owned()));
    }
    let existed = out.exists();
    if existed && std::fs::read_dir(out).map_err(io(out))?.next().is_some() {
        return Err(BackupError::TargetNotEmpty(out.to_owned()));
    }
    let made = copy_all(data, out);
    if made.is_err() {
        if existed {
            // Empty before: emptied again.
            if let Ok(entries) = std::fs::read_dir(out) {
                for entry in entries.flatten() {
                    let path = entry.path();
                    let _ = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(out);
        }
    }
    made
}

fn copy_all(data: &Path, out: &Path) -> Result<BackupReport, BackupError> {
    let log_dir = out.join("log");
    crate::log::private_dir(&log_dir).map_err(io(&log_dir))?;
    // The events are private to the node's owner, in the copy too (a node refuses a
    // data directory others can read); an empty target given may have other modes.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o700)).map_err(io(out))?;
    }
    let mut bytes = 0u64;
    // 1. The log: sealed segments (and their idx files) first, the newest last.
    let segments = crate::log::segment_files_with_idx(&data.join("log"))?;
    for (i, (segment, idx)) in segments.iter().enumerate() {
        let newest = i + 1 == segments.len();
        bytes += copy_file(segment, &log_dir)?;
        if !newest && let Some(idx) = idx {
            bytes += copy_file(idx, &log_dir)?;
        }
    }
    // 2. What a node keeps beside its log.
    let mut files = Vec::new();
    for name in ["catalog", "tokens.json", "audit.jsonl"] {
        let path = data.join(name);
        if path.is_file() {
            bytes += copy_file(&path, out)?;
            files.push(name.to_owned());
        }
    }
    sync_dir(&log_dir)?;
    sync_dir(out)?;
    // 3. The copy opens as a node opens it (a torn tail is cut), then every frame of
    // every segment is verified.
    let (log, recovery) = Log::open(LogConfig::new(&log_dir))?;
    let head = log.head();
    log.close();
    let report = crate::log::repair::inspect(&log_dir)?;
    if let Some(damage) = report.damage {
        return Err(BackupError::Log(LogError::Corrupt {
            segment: damage.segment,
            offset: damage.offset,
            reason: damage.reason,
        }));
    }
    // 4. The catalog reads as a node reads it at start (a torn tail is cut).
    if files.iter().any(|f| f == "catalog") {
        crate::store::catalog::Catalog::open(&out.join("catalog")).map_err(BackupError::Catalog)?;
    }
    Ok(BackupReport {
        out: out.to_owned(),
        head,
        segments: segments.len(),
        bytes,
        torn_bytes: recovery.truncated_bytes,
        files,
    })
}

/// Copies `from` into directory `to` under the same name, synced; returns its bytes.
fn copy_file(from: &Path, to: &Path) -> Result<u64, BackupError> {
    let name = from.file_name().unwrap_or_default();
    let target = to.join(name);
    let mut source = std::fs::File::open(from).map_err(io(from))?;
    let mut file = crate::log::private_file(&target).map_err(io(&target))?;
    let copied = std::io::copy(&mut source, &mut file).map_err(io(&target))?;
    file.sync_all().map_err(io(&target))?;
    Ok(copied)
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}
