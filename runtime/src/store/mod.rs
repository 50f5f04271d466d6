//! The projection store: documents and engine metadata in fjall.
//!
//! One keyspace per projection version (`p.<name>.v<N>`) holds its documents under
//! order-preserving keys ([`encoding`]); the `meta` keyspace holds deployed sources,
//! each projection's checkpoint (the next log position it will apply) and faults, the
//! identity of the log the projections were folded from (`log-identity`), and a
//! `rebuild/<label>` marker while a projection's documents are being dropped for a
//! rebuild (so a crash in the middle finishes the drop at the next start), and the
//! store's `format` version ([`FORMAT_VERSION`], little-endian u32: how documents,
//! keys and metadata are encoded): a store written by a newer release is refused at
//! open instead of misread.
//!
//! Deploys, promotions and retirements are also appended to the [`catalog`] beside the
//! store, before `meta`: it is what a damaged store cannot take along (see
//! [`Store::open`]).
//!
//! Invariant: the engine writes a batch's documents and checkpoints in one fjall
//! transaction, so after any crash every projection's documents match its checkpoint
//! exactly (fjall's journal is crash-consistent; a lost tail only moves checkpoints
//! back, and the engine re-applies from there).

pub use datamesh_compiler::exec::storage as encoding;

pub mod catalog;
pub mod fault;

pub use fault::Fault;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use fjall::{KeyspaceCreateOptions, Readable, SingleWriterTxDatabase, SingleWriterTxKeyspace};

/// A store error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// fjall failed.
    #[error("projection store: {0}")]
    Fjall(#[from] fjall::Error),
    /// Stored bytes do not decode.
    #[error("projection store: corrupt entry {0}")]
    Corrupt(String),
    /// An internal lock was poisoned by a panic.
    #[error("projection store: internal lock poisoned")]
    Lock,
    /// The projection version was retired: its documents are gone.
    #[error("projection store: `{0}` was retired")]
    Retired(String),
    /// The catalog (deploys, promotions, retirements) cannot be read or written.
    #[error("catalog {0}")]
    Catalog(String),
    /// Written in a store format this build does not read.
    #[error(
        "projection store: written in store format {0}, newer than this build's format {FORMAT_VERSION}: run the release that wrote it (or a newer one)"
    )]
    NewerFormat(u32),
}

/// The longest key the store holds, in bytes (fjall's limit). Projection keys come from
/// event payloads, so the engine checks this before writing and faults a projection
/// whose key is longer; a read of a longer key finds nothing.
pub const MAX_KEY_BYTES: usize = u16::MAX as usize;

/// The store format this build writes and reads (recorded in `meta` as `format`).
pub const FORMAT_VERSION: u32 = 1;

/// A stored key and value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// A deployed program as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// Sequence number, in deploy order.
    pub seq: u64,
    /// Where it came from (file name).
    pub origin: String,
    /// The source text.
    pub source: String,
}

/// Writes of one engine batch, committed atomically.
#[derive(Debug, Default)]
pub struct Commit {
    /// (keyspace name, key bytes, `Some(doc bytes)` or `None` to delete).
    pub docs: Vec<(String, Vec<u8>, Option<Vec<u8>>)>,
    /// (projection label, next position).
    pub checkpoints: Vec<(String, u64)>,
    /// (projection label, why it stopped).
    pub faults: Vec<(String, Fault)>,
}

/// The fjall database of a node.
pub struct Store {
    db: SingleWriterTxDatabase,
    meta: SingleWriterTxKeyspace,
    spaces: Mutex<HashMap<String, SingleWriterTxKeyspace>>,
    /// Keyspaces of retired projection versions: never created again, never written.
    retired: Mutex<std::collections::HashSet<String>>,
    /// The control-plane history, written before `meta`.
    catalog: catalog::Catalog,
}

/// Whether fjall failed because the store's files are damaged (rather than an I/O
/// failure of the machine, a lock held by another process or a newer format).
fn is_damage(error: &fjall::Error) -> bool {
    use std::io::ErrorKind;
    let io_damage = |e: &std::io::Error| {
        matches!(
            e.kind(),
            ErrorKind::UnexpectedEof | ErrorKind::InvalidData | ErrorKind::NotFound
        )
    };
    match error {
        fjall::Error::Io(e) | fjall::Error::Storage(fjall::LsmError::Io(e)) => io_damage(e),
        fjall::Error::Locked | fjall::Error::Poisoned | fjall::Error::InvalidVersion(Some(_)) => {
            false
        }
        _ => true,
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// The keyspace name of a projection version.
pub fn keyspace_name(projection: &str, version: u32) -> String {
    format!("p.{projection}.v{version}")
}

impl Store {
    /// Opens or creates the store in `dir`, with its catalog beside it (`catalog` in
    /// `dir`'s parent).
    ///
    /// Every deploy, promotion and retirement recorded in the catalog is put back into
    /// `meta` (the catalog is written first, so `meta` may lack the last one after a
    /// crash). A store that cannot be opened because its files are damaged (checksum
    /// mismatches, truncated or missing files, an unreadable journal) is moved aside to
    /// `store.damaged-<unix seconds>` and a fresh one is started from the catalog: the
    /// projections are derived from the log, so they rebuild with nothing lost. I/O
    /// errors, a locked store or a newer format are returned instead.
    ///
    /// # Errors
    /// fjall errors that are not damage, a damaged catalog, a newer store format.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let catalog_path = dir
            .parent()
            .map_or_else(|| Path::new("catalog").to_owned(), |p| p.join("catalog"));
        let (catalog, changes, created) = catalog::Catalog::open(&catalog_path)?;
        let opened = match Store::open_db(dir) {
            Err(StoreError::Fjall(e)) if is_damage(&e) => {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let aside = dir.with_file_name(format!("store.damaged-{stamp}"));
                tracing::error!(store = %dir.display(), moved_to = %aside.display(), error = %e, "the projection store is damaged: it is moved aside and a fresh one started from the catalog; every projection rebuilds from the log");
                std::fs::rename(dir, &aside)
                    .map_err(|io| StoreError::Fjall(fjall::Error::Io(io)))?;
                Store::open_db(dir)?
            }
            other => other?,
        };
        let (db, meta, retired) = opened;
        let store = Store {
            db,
            meta,
            spaces: Mutex::new(HashMap::new()),
            retired: Mutex::new(retired),
            catalog,
        };
        if created {
            // A store from before the catalog: the catalog starts as its copy.
            for deployment in store.deployments()? {
                store.catalog.append(&catalog::Change::Deploy {
                    seq: deployment.seq,
                    origin: deployment.origin,
                    source: deployment.source,
                })?;
            }
            let mut promoted: Vec<(String, u32)> = store.promoted()?.into_iter().collect();
            promoted.sort();
            for (name, version) in promoted {
                store
                    .catalog
                    .append(&catalog::Change::Promote { name, version })?;
            }
            let mut retired: Vec<String> = store
                .retired
                .lock()
                .map_err(|_| StoreError::Lock)?
                .iter()
                .cloned()
                .collect();
            retired.sort();
            for keyspace in retired {
                store
                    .catalog
                    .append(&catalog::Change::Retire { keyspace })?;
            }
        } else {
            store.replay(changes)?;
        }
        Ok(store)
    }

    /// Opens fjall, checks the store format and reads the retired keyspaces.
    fn open_db(
        dir: &Path,
    ) -> Result<
        (
            SingleWriterTxDatabase,
            SingleWriterTxKeyspace,
            std::collections::HashSet<String>,
        ),
        StoreError,
    > {
        let db = SingleWriterTxDatabase::builder(dir).open()?;
        let meta = db.keyspace("meta", KeyspaceCreateOptions::default)?;
        match meta.get("format")? {
            Some(bytes) => {
                let version = <[u8; 4]>::try_from(&*bytes)
                    .map(u32::from_le_bytes)
                    .map_err(|_| StoreError::Corrupt("format version".into()))?;
                if version > FORMAT_VERSION {
                    return Err(StoreError::NewerFormat(version));
                }
            }
            None => {
                let mut tx = db.write_tx();
                tx.insert(&meta, "format", FORMAT_VERSION.to_le_bytes().to_vec());
                tx.commit()?;
            }
        }
        let mut retired = std::collections::HashSet::new();
        for guard in db.read_tx().prefix(&meta, "retired/") {
            let (key, _) = guard.into_inner()?;
            if let Some(name) = key.strip_prefix(b"retired/") {
                retired.insert(String::from_utf8_lossy(name).into_owned());
            }
        }
        // Read everything else `meta` holds once, so damage in it shows here.
        for guard in db.read_tx().iter(&meta) {
            guard.into_inner()?;
        }
        Ok((db, meta, retired))
    }

    /// Puts every change of the catalog into `meta` (what is there already is written
    /// again, unchanged).
    fn replay(&self, changes: Vec<catalog::Change>) -> Result<(), StoreError> {
        // Only what `meta` lacks is written (normally nothing: the catalog is ahead of
        // `meta` by at most the change a crash interrupted, or by everything after a
        // damaged store was replaced).
        let mut deploys: Vec<(String, String)> = Vec::new();
        let mut promoted: HashMap<String, u32> = HashMap::new();
        let mut retire = Vec::new();
        for change in changes {
            match change {
                catalog::Change::Deploy {
                    seq,
                    origin,
                    source,
                } => {
                    let key = format!("deploy/{seq:010}");
                    if self.meta.get(&key)?.is_none() {
                        let value =
                            serde_json::json!({ "origin": origin, "source": source }).to_string();
                        deploys.push((key, value));
                    }
                }
                catalog::Change::Promote { name, version } => {
                    promoted.insert(name, version);
                }
                catalog::Change::Retire { keyspace } => retire.push(keyspace),
            }
        }
        let current = self.promoted()?;
        promoted.retain(|name, version| current.get(name) != Some(version));
        if !deploys.is_empty() || !promoted.is_empty() {
            let mut tx = self.db.write_tx();
            for (key, value) in deploys {
                tx.insert(&self.meta, key, value);
            }
            for (name, version) in promoted {
                tx.insert(
                    &self.meta,
                    format!("promoted/{name}"),
                    version.to_le_bytes().to_vec(),
                );
            }
            tx.commit()?;
            self.db.persist(fjall::PersistMode::SyncAll)?;
        }
        for keyspace in retire {
            if !self.is_retired(&keyspace) {
                self.retire_in_store(&keyspace)?;
            }
        }
        Ok(())
    }

    /// Bytes in the store's write buffer (memtables not yet flushed).
    pub fn write_buffer_bytes(&self) -> u64 {
        self.db.write_buffer_size()
    }

    /// Bytes the store takes on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
    }

    /// About how many documents the keyspace holds (fjall's estimate: entries not
    /// yet compacted away count too), if it is open.
    pub fn approximate_documents(&self, keyspace: &str) -> Option<u64> {
        let spaces = self.spaces.lock().ok()?;
        spaces.get(keyspace).map(|k| k.approximate_len() as u64)
    }

    /// Whether the keyspace of a projection version was retired.
    pub fn is_retired(&self, keyspace: &str) -> bool {
        self.retired
            .lock()
            .map(|r| r.contains(keyspace))
            .unwrap_or(true)
    }

    /// Retires a projection version: records it (so it stays retired across restarts),
    /// then deletes its keyspace. Later commits skip its documents.
    ///
    /// # Errors
    /// fjall errors.
    pub fn retire(&self, keyspace: &str) -> Result<(), StoreError> {
        self.catalog.append(&catalog::Change::Retire {
            keyspace: keyspace.to_owned(),
        })?;
        self.retire_in_store(keyspace)
    }

    /// [`Store::retire`] without the catalog.
    fn retire_in_store(&self, keyspace: &str) -> Result<(), StoreError> {
        self.retired
            .lock()
            .map_err(|_| StoreError::Lock)?
            .insert(keyspace.to_owned());
        let mut tx = self.db.write_tx();
        tx.insert(&self.meta, format!("retired/{keyspace}"), Vec::new());
        tx.commit()?;
        self.db.persist(fjall::PersistMode::SyncAll)?;
        let handle = self
            .spaces
            .lock()
            .map_err(|_| StoreError::Lock)?
            .remove(keyspace);
        let handle = match handle {
            Some(h) => Some(h),
            None if self.db.keyspace_exists(keyspace) => {
                Some(self.db.keyspace(keyspace, KeyspaceCreateOptions::default)?)
            }
            None => None,
        };
        if let Some(handle) = handle {
            self.db.inner().delete_keyspace(handle.inner().clone())?;
        }
        Ok(())
    }

    /// The promoted version of each projection name.
    ///
    /// # Errors
    /// fjall errors.
    pub fn promoted(&self) -> Result<HashMap<String, u32>, StoreError> {
        let mut out = HashMap::new();
        for guard in self.db.read_tx().prefix(&self.meta, "promoted/") {
            let (key, value) = guard.into_inner()?;
            let name = key.strip_prefix(b"promoted/").unwrap_or_default();
            let version: [u8; 4] = value[..]
                .try_into()
                .map_err(|_| StoreError::Corrupt("promoted version".into()))?;
            out.insert(
                String::from_utf8_lossy(name).into_owned(),
                u32::from_le_bytes(version),
            );
        }
        Ok(out)
    }

    /// Records the promoted version of a projection.
    ///
    /// # Errors
    /// fjall errors.
    pub fn promote(&self, name: &str, version: u32) -> Result<(), StoreError> {
        self.catalog.append(&catalog::Change::Promote {
            name: name.to_owned(),
            version,
        })?;
        let mut tx = self.db.write_tx();
        tx.insert(
            &self.meta,
            format!("promoted/{name}"),
            version.to_le_bytes().to_vec(),
        );
        tx.commit()?;
        self.db.persist(fjall::PersistMode::SyncAll)?;
        Ok(())
    }

    /// The keyspace of a projection version, created on first use.
    ///
    /// # Errors
    /// fjall errors.
    pub fn keyspace(&self, name: &str) -> Result<SingleWriterTxKeyspace, StoreError> {
        if self.is_retired(name) {
            return Err(StoreError::Retired(name.to_owned()));
        }
        let mut spaces = self.spaces.lock().map_err(|_| StoreError::Lock)?;
        if let Some(ks) = spaces.get(name) {
            return Ok(ks.clone());
        }
        let ks = self.db.keyspace(name, KeyspaceCreateOptions::default)?;
        spaces.insert(name.to_owned(), ks.clone());
        Ok(ks)
    }

    /// Every deployed program, in deploy order.
    ///
    /// # Errors
    /// fjall errors or corrupt entries.
    pub fn deployments(&self) -> Result<Vec<Deployment>, StoreError> {
        let snapshot = self.db.read_tx();
        let mut out = Vec::new();
        for guard in snapshot.prefix(&self.meta, b"deploy/") {
            let (key, value) = guard.into_inner()?;
            let seq = std::str::from_utf8(&key[b"deploy/".len()..])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| StoreError::Corrupt("deployment key".to_owned()))?;
            let json: serde_json::Value = serde_json::from_slice(&value)
                .map_err(|e| StoreError::Corrupt(format!("deployment {seq}: {e}")))?;
            out.push(Deployment {
                seq,
                origin: json["origin"].as_str().unwrap_or_default().to_owned(),
                source: json["source"].as_str().unwrap_or_default().to_owned(),
            });
        }
        Ok(out)
    }

    /// The identity of the log this store's projections were folded from, if recorded.
    ///
    /// # Errors
    /// fjall errors, or a stored identity that is not 16 bytes.
    pub fn log_identity(&self) -> Result<Option<u128>, StoreError> {
        match self.meta.get("log-identity")? {
            None => Ok(None),
            Some(bytes) => {
                let bytes: [u8; 16] = bytes[..]
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("log identity".into()))?;
                Ok(Some(u128::from_le_bytes(bytes)))
            }
        }
    }

    /// Records the identity of the log the projections are folded from, durably.
    ///
    /// # Errors
    /// fjall errors.
    pub fn set_log_identity(&self, identity: u128) -> Result<(), StoreError> {
        let mut tx = self.db.write_tx();
        tx.insert(&self.meta, "log-identity", identity.to_le_bytes().to_vec());
        tx.commit()?;
        self.db.persist(fjall::PersistMode::SyncAll)?;
        Ok(())
    }

    /// Labels of projections whose drop for a rebuild was interrupted (see
    /// [`Store::reset_projection`]).
    ///
    /// # Errors
    /// fjall errors.
    pub fn pending_rebuilds(&self) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for guard in self.db.read_tx().prefix(&self.meta, "rebuild/") {
            let (key, _) = guard.into_inner()?;
            if let Some(label) = key.strip_prefix(b"rebuild/") {
                out.push(String::from_utf8_lossy(label).into_owned());
            }
        }
        Ok(out)
    }

    /// Drops a projection version's documents, checkpoint and fault, so that it folds
    /// again from position 0. Crash-safe: a `rebuild/<label>` marker is made durable
    /// (with the checkpoint and fault removed) before any document is removed, and
    /// removed only once every document is; a start that finds the marker drops again.
    ///
    /// # Errors
    /// fjall errors; the marker then stays, and the next start tries again.
    pub fn reset_projection(&self, label: &str, keyspace: &str) -> Result<(), StoreError> {
        let marker = format!("rebuild/{label}");
        let mut tx = self.db.write_tx();
        tx.insert(&self.meta, marker.as_str(), keyspace.as_bytes().to_vec());
        tx.remove(&self.meta, format!("checkpoint/{label}"));
        tx.remove(&self.meta, format!("fault/{label}"));
        tx.commit()?;
        self.db.persist(fjall::PersistMode::SyncAll)?;
        if !self.is_retired(keyspace) && self.db.keyspace_exists(keyspace) {
            let ks = self.keyspace(keyspace)?;
            // In chunks, each starting after the last key removed, so no chunk walks
            // over the tombstones of the ones before.
            let mut after: Option<Vec<u8>> = None;
            loop {
                let keys: Vec<Vec<u8>> = {
                    let snapshot = self.db.read_tx();
                    let lower = match &after {
                        Some(k) => std::ops::Bound::Excluded(k.clone()),
                        None => std::ops::Bound::Unbounded,
                    };
                    let mut keys = Vec::new();
                    for guard in snapshot.range(&ks, (lower, std::ops::Bound::Unbounded)) {
                        let (key, _) = guard.into_inner()?;
                        keys.push(key.to_vec());
                        if keys.len() >= 8192 {
                            break;
                        }
                    }
                    keys
                };
                let Some(last) = keys.last().cloned() else {
                    break;
                };
                let mut tx = self.db.write_tx();
                for key in keys {
                    tx.remove(&ks, key);
                }
                tx.commit()?;
                after = Some(last);
            }
        }
        let mut tx = self.db.write_tx();
        tx.remove(&self.meta, marker);
        tx.commit()?;
        self.db.persist(fjall::PersistMode::SyncAll)?;
        Ok(())
    }

    /// Records a deployed program durably.
    ///
    /// # Errors
    /// fjall errors.
    pub fn add_deployment(&self, seq: u64, origin: &str, source: &str) -> Result<(), StoreError> {
        self.catalog.append(&catalog::Change::Deploy {
            seq,
            origin: origin.to_owned(),
            source: source.to_owned(),
        })?;
        let value = serde_json::json!({ "origin": origin, "source": source }).to_string();
        let mut tx = self.db.write_tx();
        tx.insert(&self.meta, format!("deploy/{seq:010}"), value);
        tx.commit()?;
        self.db.persist(fjall::PersistMode::SyncAll)?;
        Ok(())
    }

    /// A projection's checkpoint: the next log position it will apply.
    ///
    /// # Errors
    /// fjall errors.
    pub fn checkpoint(&self, label: &str) -> Result<u64, StoreError> {
        Ok(self
            .meta
            .get(format!("checkpoint/{label}"))?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_le_bytes))
            .unwrap_or(0))
    }

    /// A projection's recorded fault, if any.
    ///
    /// # Errors
    /// fjall errors.
    pub fn fault(&self, label: &str) -> Result<Option<Fault>, StoreError> {
        Ok(self
            .meta
            .get(format!("fault/{label}"))?
            .map(|v| Fault::from_stored(&v)))
    }

    /// Reads one document.
    ///
    /// # Errors
    /// fjall errors.
    pub fn get(
        &self,
        keyspace: &SingleWriterTxKeyspace,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if key.len() > MAX_KEY_BYTES {
            // Never written (see [`MAX_KEY_BYTES`]); fjall refuses to look it up.
            return Ok(None);
        }
        Ok(keyspace.get(key)?.map(|v| v.to_vec()))
    }

    /// Reads documents in key order: those whose key starts with `prefix`, from `start`
    /// (inclusive) to `end` (exclusive), at most `limit`.
    ///
    /// # Errors
    /// fjall errors.
    pub fn scan(
        &self,
        keyspace: &SingleWriterTxKeyspace,
        prefix: &[u8],
        start: Option<&[u8]>,
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let snapshot = self.db.read_tx();
        let mut out = Vec::new();
        let lower: Vec<u8> = match start {
            Some(s) if s > prefix => s.to_vec(),
            _ => prefix.to_vec(),
        };
        for guard in snapshot.range(keyspace, lower..) {
            let (key, value) = guard.into_inner()?;
            if !key.starts_with(prefix) || end.is_some_and(|e| &key[..] >= e) || out.len() >= limit
            {
                break;
            }
            out.push((key.to_vec(), value.to_vec()));
        }
        Ok(out)
    }

    /// Commits one engine batch atomically.
    ///
    /// # Errors
    /// fjall errors; nothing of the batch is visible then.
    pub fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        let mut spaces = HashMap::new();
        for (name, _, _) in &commit.docs {
            // A version retired while its batch ran: its documents are not wanted.
            if !spaces.contains_key(name) && !self.is_retired(name) {
                spaces.insert(name.clone(), self.keyspace(name)?);
            }
        }
        let mut tx = self.db.write_tx();
        for (name, key, doc) in commit.docs {
            let Some(ks) = spaces.get(&name) else {
                continue;
            };
            match doc {
                Some(doc) => tx.insert(ks, key, doc),
                None => tx.remove(ks, key),
            }
        }
        for (label, position) in commit.checkpoints {
            tx.insert(
                &self.meta,
                format!("checkpoint/{label}"),
                position.to_le_bytes().to_vec(),
            );
        }
        for (label, fault) in commit.faults {
            tx.insert(&self.meta, format!("fault/{label}"), fault.to_json());
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod open_tests {
    use super::*;

    #[test]
    fn a_store_of_a_newer_format_is_refused_and_this_one_reopens() {
        // The store in a directory of its own: its catalog goes beside it, in the
        // temporary directory (not in the system's /tmp, shared with everything else).
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("store");
        {
            let store = Store::open(&path).expect("create");
            assert_eq!(
                store.meta.get("format").expect("read").as_deref(),
                Some(&FORMAT_VERSION.to_le_bytes()[..])
            );
        }
        drop(Store::open(&path).expect("reopen"));
        {
            let store = Store::open(&path).expect("open");
            let mut tx = store.db.write_tx();
            tx.insert(
                &store.meta,
                "format",
                (FORMAT_VERSION + 1).to_le_bytes().to_vec(),
            );
            tx.commit().expect("commit");
            store
                .db
                .persist(fjall::PersistMode::SyncAll)
                .expect("persist");
        }
        match Store::open(&path) {
            Err(e @ StoreError::NewerFormat(_)) => {
                assert!(e.to_string().contains("newer than this build"), "{e}");
            }
            other => panic!("expected NewerFormat, got {other:?}"),
        }
    }

    #[test]
    fn a_damaged_store_restarts_from_the_catalog_with_every_deploy_promotion_and_retirement() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("store");
        {
            let store = Store::open(&path).expect("create");
            store
                .add_deployment(0, "a.dmp", "event A { x: int }")
                .expect("deploy");
            store
                .add_deployment(1, "b.dmp", "event B { y: int }")
                .expect("deploy");
            store.keyspace("p.b.v1").expect("keyspace");
            store.promote("b", 2).expect("promote");
            store.retire("p.b.v1").expect("retire");
        }
        // The store's version file is damaged: fjall refuses to open it.
        std::fs::write(path.join("version"), b"\xff\xff").expect("damage");
        let store = Store::open(&path).expect("moved aside and started fresh");
        let moved = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(Result::ok)
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("store.damaged-")
            });
        assert!(moved, "the damaged store is kept aside");
        let deployments: Vec<(u64, String)> = store
            .deployments()
            .expect("deployments")
            .into_iter()
            .map(|d| (d.seq, d.origin))
            .collect();
        assert_eq!(deployments, vec![(0, "a.dmp".into()), (1, "b.dmp".into())]);
        assert_eq!(store.promoted().expect("promoted").get("b"), Some(&2));
        assert!(store.is_retired("p.b.v1"));
        assert!(matches!(
            store.keyspace("p.b.v1"),
            Err(StoreError::Retired(_))
        ));
    }

    #[test]
    fn a_change_the_catalog_has_and_meta_lacks_is_put_back() {
        // As after a crash between the catalog's sync and the store's commit.
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("store");
        drop(Store::open(&path).expect("create"));
        {
            let (catalog, _, _) =
                catalog::Catalog::open(&dir.path().join("catalog")).expect("catalog");
            catalog
                .append(&catalog::Change::Deploy {
                    seq: 0,
                    origin: "late.dmp".into(),
                    source: "event L { x: int }".into(),
                })
                .expect("append");
            catalog
                .append(&catalog::Change::Promote {
                    name: "l".into(),
                    version: 3,
                })
                .expect("append");
        }
        let store = Store::open(&path).expect("reopen");
        let deployments = store.deployments().expect("deployments");
        assert_eq!(deployments.len(), 1);
        assert_eq!(deployments[0].origin, "late.dmp");
        assert_eq!(store.promoted().expect("promoted").get("l"), Some(&3));
    }
}
