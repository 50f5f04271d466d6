//! The catalog: the node's control-plane history (deployed programs, promotions,
//! retirements) in a small append-only file beside the projection store.
//!
//! Projections are derived from the log and can always be rebuilt; what cannot be
//! derived is which programs were deployed and which versions were promoted or
//! retired. The store's `meta` keyspace holds that too, but a damaged store must not
//! take it along: every such change is appended here first (and synced), then written
//! to `meta`. When the store cannot be opened because it is damaged, the node moves it
//! aside and starts a fresh one from the catalog, and the projections rebuild from the
//! log (see [`super::Store::open`]).
//!
//! Layout: the header `DMCATLOG | version u32 | 0 u32`, then records `len u32 | crc32
//! u32 (of len and body) | body`, each body one JSON object (`{"deploy": {seq, origin,
//! source}}`, `{"promote": {name, version}}`, `{"retire": {keyspace}}`).
//!
//! Invariant: a record is acknowledged only once synced; a torn last record (a crash
//! while appending it) is cut at open; a damaged record followed by intact ones is
//! refused, naming the byte, since cutting it would forget a deploy or a retirement.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::StoreError;

const MAGIC: &[u8; 8] = b"DMCATLOG";
const VERSION: u32 = 1;
const HEADER: usize = 16;

/// One control-plane change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// A program was deployed.
    Deploy {
        /// Its sequence number.
        seq: u64,
        /// Where it came from.
        origin: String,
        /// Its source.
        source: String,
    },
    /// A projection version was promoted.
    Promote {
        /// Projection name.
        name: String,
        /// Version.
        version: u32,
    },
    /// A projection version was retired (its keyspace name).
    Retire {
        /// The keyspace of the version.
        keyspace: String,
    },
}

/// The open catalog file.
#[derive(Debug)]
pub struct Catalog {
    path: PathBuf,
    file: Mutex<File>,
}

fn damaged(path: &Path, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Catalog(format!("{}: {reason}", path.display()))
}

impl Catalog {
    /// Opens the catalog at `path` (creating it when missing) and returns every change
    /// in it, in order, and whether it was just created.
    ///
    /// # Errors
    /// I/O errors, a file that is not a catalog (or of a newer version), and damage
    /// before its last record.
    pub fn open(path: &Path) -> Result<(Catalog, Vec<Change>, bool), StoreError> {
        let created = !path.exists();
        if created {
            let tmp = path.with_extension("tmp");
            let mut file = crate::log::private_file(&tmp).map_err(|e| damaged(path, e))?;
            let mut header = [0u8; HEADER];
            header[..8].copy_from_slice(MAGIC);
            header[8..12].copy_from_slice(&VERSION.to_le_bytes());
            file.write_all(&header)
                .and_then(|()| file.sync_all())
                .map_err(|e| damaged(path, e))?;
            std::fs::rename(&tmp, path).map_err(|e| damaged(path, e))?;
            if let Some(dir) = path.parent() {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| damaged(path, e))?;
            }
        }
        let bytes = std::fs::read(path).map_err(|e| damaged(path, e))?;
        let (changes, good) = parse(&bytes).map_err(|e| damaged(path, e))?;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| damaged(path, e))?;
        if good < bytes.len() {
            tracing::warn!(catalog = %path.display(), bytes = bytes.len() - good, "cutting the torn last record of the catalog");
            file.set_len(good as u64)
                .and_then(|()| file.sync_all())
                .map_err(|e| damaged(path, e))?;
        }
        let mut file = file;
        use std::io::Seek;
        file.seek(std::io::SeekFrom::End(0))
            .map_err(|e| damaged(path, e))?;
        Ok((
            Catalog {
                path: path.to_owned(),
                file: Mutex::new(file),
            },
            changes,
            created,
        ))
    }

    /// Appends a change durably.
    ///
    /// # Errors
    /// I/O errors.
    pub fn append(&self, change: &Change) -> Result<(), StoreError> {
        let body = serde_json::to_vec(change).map_err(|e| damaged(&self.path, e))?;
        let len = u32::try_from(body.len()).map_err(|e| damaged(&self.path, e))?;
        let mut record = Vec::with_capacity(8 + body.len());
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&checksum(len, &body).to_le_bytes());
        record.extend_from_slice(&body);
        let mut file = self.file.lock().map_err(|_| StoreError::Lock)?;
        file.write_all(&record)
            .and_then(|()| file.sync_data())
            .map_err(|e| damaged(&self.path, e))
    }
}

fn checksum(len: u32, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len.to_le_bytes());
    hasher.update(body);
    hasher.finalize()
}

/// The changes in a catalog's bytes and the length of its good prefix (shorter than
/// the bytes only for a torn last record).
fn parse(bytes: &[u8]) -> Result<(Vec<Change>, usize), String> {
    let header = bytes.get(..HEADER).ok_or("shorter than a catalog header")?;
    if &header[..8] != MAGIC {
        return Err("not a DataMesh catalog".to_owned());
    }
    let version = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    if version != VERSION {
        return Err(format!(
            "catalog format {version}; this build reads format {VERSION}"
        ));
    }
    let mut changes = Vec::new();
    let mut at = HEADER;
    while at < bytes.len() {
        match record(&bytes[at..]) {
            Some((change, used)) => {
                changes.push(change);
                at += used;
            }
            None => {
                // A torn last record, or damage: intact records after it tell.
                let intact_after = (at + 1..bytes.len()).any(|i| record(&bytes[i..]).is_some());
                if intact_after {
                    return Err(format!(
                        "the record at byte {at} is damaged and intact records follow it; the catalog holds the deployed programs, promotions and retirements, so the node will not guess: restore it from a copy"
                    ));
                }
                return Ok((changes, at));
            }
        }
    }
    Ok((changes, at))
}

/// The record at the start of `bytes`, if it is whole and verifies.
fn record(bytes: &[u8]) -> Option<(Change, usize)> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    let end = 8usize.checked_add(len as usize)?;
    let body = bytes.get(8..end)?;
    if len == 0 || checksum(len, body) != crc {
        return None;
    }
    serde_json::from_slice(body)
        .ok()
        .map(|change| (change, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes() -> Vec<Change> {
        vec![
            Change::Deploy {
                seq: 0,
                origin: "bank.dmp".into(),
                source: "event E { a: int }".into(),
            },
            Change::Promote {
                name: "balances".into(),
                version: 2,
            },
            Change::Retire {
                keyspace: "p.balances.v1".into(),
            },
        ]
    }

    #[test]
    fn changes_survive_reopening_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("catalog");
        let (catalog, found, created) = Catalog::open(&path).expect("create");
        assert!(created && found.is_empty());
        for change in changes() {
            catalog.append(&change).expect("append");
        }
        drop(catalog);
        let (_, found, created) = Catalog::open(&path).expect("reopen");
        assert!(!created);
        assert_eq!(found, changes());
        // A torn last record is cut, the rest kept.
        let len = std::fs::metadata(&path).expect("meta").len();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        file.set_len(len - 3).expect("cut");
        let (catalog, found, _) = Catalog::open(&path).expect("torn");
        assert_eq!(found, changes()[..2]);
        catalog.append(&changes()[2]).expect("append after the cut");
        drop(catalog);
        assert_eq!(Catalog::open(&path).expect("again").1, changes());
    }

    #[test]
    fn damage_before_the_last_record_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("catalog");
        let (catalog, _, _) = Catalog::open(&path).expect("create");
        for change in changes() {
            catalog.append(&change).expect("append");
        }
        drop(catalog);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[HEADER + 12] ^= 0x20;
        std::fs::write(&path, &bytes).expect("write");
        let message = Catalog::open(&path).expect_err("damaged").to_string();
        assert!(message.contains("is damaged"), "{message}");
        std::fs::write(&path, b"something else entirely").expect("write");
        let message = Catalog::open(&path).expect_err("junk").to_string();
        assert!(message.contains("not a DataMesh catalog"), "{message}");
    }
}
