//! [`DocTable`]: one projection's documents in memory, keyed by their stored key bytes
//! ([`crate::exec::storage::encode_key`]), with the set of documents changed since the last
//! flush.
//!
//! Both engines fold into a table: the in-memory folds (`dmc run`, the W6 bench) keep
//! every document in it, and the node uses it as the write-back cache in front of its
//! store: a document is loaded at most once per residence, changed in place by every
//! event of a batch, and written to the store once, when the batch commits.
//!
//! Keys are the order-preserving byte encoding the store uses, so a handler's key is
//! encoded once, straight from what the key function produced, with no intermediate
//! [`datamesh_stdlib::Value`]s; the same bytes are the fjall key at flush time.
//!
//! Invariants: an entry's `doc` is `None` when the document is known not to exist
//! (never created, or deleted); an entry is dirty exactly when it differs from what the
//! store holds, and every dirty entry's key is in the dirty list (which may also hold
//! keys whose change was rolled back: those are skipped at flush).
//!
//! Keys come from client payloads, so the hash is seeded at random (a per-process seed
//! and one per table, foldhash's `SeedableRandomState`, as the log's tables are): a
//! client cannot choose keys that all land in one probe sequence. Nothing observable
//! depends on the seed (iteration order is never exposed as an order).

use std::hash::BuildHasher;

use smallvec::SmallVec;

use crate::exec::storage;

/// The hash of one table: foldhash seeded at random when the table is made, and the
/// hash of the single-document key under that seed, computed once.
#[derive(Debug, Clone)]
pub struct KeyHasher {
    state: foldhash::fast::SeedableRandomState,
    single: u64,
}

impl KeyHasher {
    /// A hasher with a fresh random seed.
    fn random() -> KeyHasher {
        let state = foldhash::fast::SeedableRandomState::random();
        let mut hasher = KeyHasher { state, single: 0 };
        hasher.single = hasher.key(storage::single_document_key());
        hasher
    }

    #[inline]
    fn bytes(&self, bytes: &[u8]) -> u64 {
        self.state.hash_one(bytes)
    }

    /// The hash of an encoded key. A key of one string is hashed on the string's bytes,
    /// so a [`TextKey`] finds it without being encoded.
    #[inline]
    pub fn key(&self, key: &[u8]) -> u64 {
        self.bytes(storage::single_text_key(key).unwrap_or(key))
    }
}

/// One document of a table.
#[derive(Debug, Clone)]
pub struct Entry<D> {
    /// The document, `None` when it does not exist.
    pub doc: Option<D>,
    /// Changed since the last flush.
    pub dirty: bool,
}

/// Key bytes, inline up to 16 bytes (most keys: an id string, a number, a day), so a
/// key lives beside its document.
pub type Key = SmallVec<[u8; 16]>;

/// A key and its entry, in the table's dense array.
#[derive(Debug)]
struct Slot<D> {
    key: Key,
    entry: Entry<D>,
}

/// A projection's documents by key bytes (see the module documentation).
///
/// Layout: the documents live in a dense array of slots (key and entry side by side),
/// and the hash index holds only 4-byte slot numbers. The index of 100,000 documents
/// is then a few hundred KiB that stays in the CPU cache, and a lookup touches one
/// slot, whose key and document share cache lines.
#[derive(Debug)]
pub struct DocTable<D> {
    index: hashbrown::HashTable<u32>,
    slots: Vec<Slot<D>>,
    /// Slot numbers of dirty entries (and of entries whose change was rolled back).
    dirty: Vec<u32>,
    /// The slot the last lookup found: consecutive events of one key (a single-document
    /// projection, a burst of one aggregate's events) skip hashing and probing. Only a
    /// hint: it is used after its key compares equal, so a stale value is harmless.
    recent: u32,
    /// The randomly seeded hash of this table's keys.
    hasher: KeyHasher,
}

impl<D> Default for DocTable<D> {
    fn default() -> Self {
        DocTable {
            index: hashbrown::HashTable::new(),
            slots: Vec::new(),
            dirty: Vec::new(),
            recent: u32::MAX,
            hasher: KeyHasher::random(),
        }
    }
}

/// Key equality without a `memcmp` call for the short keys most documents have: two
/// overlapping word compares cover 8 to 16 bytes, two half-word ones 4 to 7, a byte
/// loop anything shorter.
#[inline]
fn same_key(a: &[u8], b: &[u8]) -> bool {
    fn word(bytes: &[u8], at: usize) -> u64 {
        let mut w = [0u8; 8];
        if let Some(chunk) = bytes.get(at..at + 8) {
            w.copy_from_slice(chunk);
        }
        u64::from_ne_bytes(w)
    }
    fn half(bytes: &[u8], at: usize) -> u32 {
        let mut w = [0u8; 4];
        if let Some(chunk) = bytes.get(at..at + 4) {
            w.copy_from_slice(chunk);
        }
        u32::from_ne_bytes(w)
    }
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        4..8 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        0..4 => a.iter().zip(b).all(|(x, y)| x == y),
        _ => a == b,
    }
}

/// A key to look up in a [`DocTable`]: its hash and equality agree with those of the
/// encoded bytes it stands for, which it produces only when the table has no entry.
pub trait KeyProbe {
    /// The hash of the encoded key under the table's hasher.
    fn hash(&self, hasher: &KeyHasher) -> u64;
    /// Whether `stored` is the encoded key.
    fn matches(&self, stored: &[u8]) -> bool;
    /// The encoded key.
    fn encoded(&self) -> Key;
}

impl KeyProbe for &[u8] {
    #[inline]
    fn hash(&self, hasher: &KeyHasher) -> u64 {
        hasher.key(self)
    }

    #[inline]
    fn matches(&self, stored: &[u8]) -> bool {
        same_key(stored, self)
    }

    fn encoded(&self) -> Key {
        Key::from_slice(self)
    }
}

/// The key of a projection's only document (a projection without `key`): compared as
/// one byte, hashed once per table, never encoded per event.
#[derive(Debug, Clone, Copy)]
pub struct SingleDocument;

impl KeyProbe for SingleDocument {
    #[inline]
    fn hash(&self, hasher: &KeyHasher) -> u64 {
        hasher.single
    }

    #[inline]
    fn matches(&self, stored: &[u8]) -> bool {
        stored == storage::single_document_key()
    }

    fn encoded(&self) -> Key {
        Key::from_slice(storage::single_document_key())
    }
}

/// The key of a document keyed by one string, probed with the string itself: the
/// common case (`key account`) skips encoding the key on every event.
#[derive(Debug, Clone, Copy)]
pub struct TextKey<'a>(&'a [u8]);

impl<'a> TextKey<'a> {
    /// The probe for a one-string key, or `None` for a string holding a 0 byte (which
    /// the key encoding escapes: those go through the encoded bytes).
    #[inline]
    pub fn new(text: &'a str) -> Option<TextKey<'a>> {
        let bytes = text.as_bytes();
        (!storage::has_zero_byte(bytes)).then_some(TextKey(bytes))
    }
}

impl KeyProbe for TextKey<'_> {
    #[inline]
    fn hash(&self, hasher: &KeyHasher) -> u64 {
        hasher.bytes(self.0)
    }

    #[inline]
    fn matches(&self, stored: &[u8]) -> bool {
        // The text has no 0 byte, so neither has a stored key equal to it: no scan.
        storage::text_key_inner(stored).is_some_and(|inner| same_key(inner, self.0))
    }

    fn encoded(&self) -> Key {
        let (head, tail) = storage::text_key_frame();
        let mut key = Key::new();
        key.push(head);
        key.extend_from_slice(self.0);
        key.extend_from_slice(&tail);
        key
    }
}

impl<D> DocTable<D> {
    /// An empty table.
    pub fn new() -> DocTable<D> {
        DocTable::default()
    }

    /// Entries held (documents, and keys known to have none).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Keys changed since the last flush (an upper bound: rolled-back changes count).
    pub fn pending(&self) -> usize {
        self.dirty.len()
    }

    /// The hash this table gives an encoded key (random per table: see the module
    /// documentation).
    pub fn key_hash(&self, key: &[u8]) -> u64 {
        self.hasher.key(key)
    }

    /// Whether the table holds nothing.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The slot number of `key`, if the table holds it.
    #[inline]
    fn find(&self, key: &impl KeyProbe, hash: u64) -> Option<usize> {
        let slots = &self.slots;
        self.index
            .find(hash, |&i| {
                slots.get(i as usize).is_some_and(|s| key.matches(&s.key))
            })
            .map(|&i| i as usize)
    }

    /// Adds a slot for a key the table does not hold; returns its number.
    fn push(&mut self, key: Key, hash: u64, entry: Entry<D>) -> usize {
        let n = self.slots.len();
        self.slots.push(Slot { key, entry });
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index.insert_unique(hash, n as u32, |&i| {
            slots.get(i as usize).map_or(0, |s| hasher.key(&s.key))
        });
        n
    }

    /// The entry of `key`, if the table holds one.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<&Entry<D>> {
        let i = self.find(&key, self.hasher.key(key))?;
        self.slots.get(i).map(|s| &s.entry)
    }

    /// The entry of `key`, if the table holds one.
    #[inline]
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut Entry<D>> {
        let i = self.find(&key, self.hasher.key(key))?;
        self.slots.get_mut(i).map(|s| &mut s.entry)
    }

    /// The slot of `key`, filled by `load` (which says what the store holds) when the
    /// table has none yet; a new entry is clean.
    #[inline]
    fn slot_or_load(&mut self, key: impl KeyProbe, load: impl FnOnce(&[u8]) -> Option<D>) -> usize {
        let recent = self.recent as usize;
        if self.slots.get(recent).is_some_and(|s| key.matches(&s.key)) {
            return recent;
        }
        let hash = key.hash(&self.hasher);
        let i = match self.find(&key, hash) {
            Some(i) => i,
            None => {
                let key = key.encoded();
                let doc = load(&key);
                self.push(key, hash, Entry { doc, dirty: false })
            }
        };
        self.recent = i as u32;
        i
    }

    /// The entry of `key`, filled by `load` (which says what the store holds) when the
    /// table has none yet; the new entry is clean.
    #[inline]
    pub fn entry_or_load(
        &mut self,
        key: &[u8],
        load: impl FnOnce(&[u8]) -> Option<D>,
    ) -> &mut Entry<D> {
        let i = self.slot_or_load(key, load);
        &mut self.slots[i].entry
    }

    /// Runs `f` on `key`'s document (loaded by `load` if the table has no entry yet);
    /// `f` returns its result and whether it changed the document, which then becomes
    /// dirty. One hash lookup.
    #[inline]
    pub fn update<R>(
        &mut self,
        key: impl KeyProbe,
        load: impl FnOnce(&[u8]) -> Option<D>,
        f: impl FnOnce(&mut Option<D>) -> (R, bool),
    ) -> R {
        let i = self.slot_or_load(key, load);
        let entry = &mut self.slots[i].entry;
        let (result, changed) = f(&mut entry.doc);
        if changed && !entry.dirty {
            entry.dirty = true;
            self.dirty.push(i as u32);
        }
        result
    }

    /// Records that `key`'s entry now differs from the store.
    #[inline]
    pub fn mark_dirty(&mut self, key: &[u8]) {
        if let Some(i) = self.find(&key, self.hasher.key(key))
            && let Some(slot) = self.slots.get_mut(i)
            && !slot.entry.dirty
        {
            slot.entry.dirty = true;
            self.dirty.push(i as u32);
        }
    }

    /// Sets `key`'s document and marks it dirty.
    pub fn put(&mut self, key: &[u8], doc: Option<D>) {
        let i = self.slot_or_load(key, |_| None);
        self.slots[i].entry.doc = doc;
        if !self.slots[i].entry.dirty {
            self.slots[i].entry.dirty = true;
            self.dirty.push(i as u32);
        }
    }

    /// Puts an entry back as it was (rolling back a failed event).
    pub fn restore(&mut self, key: &[u8], entry: Entry<D>) {
        let i = self.slot_or_load(key, |_| None);
        let was_dirty = self.slots[i].entry.dirty;
        if entry.dirty && !was_dirty {
            self.dirty.push(i as u32);
        }
        self.slots[i].entry = entry;
    }

    /// Removes `key`'s entry (rolling back an entry that did not exist before).
    pub fn forget(&mut self, key: &[u8]) {
        let hash = self.hasher.key(key);
        let Some(i) = self.find(&key, hash) else {
            return;
        };
        let slots = &self.slots;
        if let Ok(found) = self.index.find_entry(hash, |&j| {
            j as usize == i && slots.get(j as usize).is_some()
        }) {
            found.remove();
        }
        // Keep the slots dense: the last one moves into the hole.
        let last = self.slots.len() - 1;
        self.slots.swap_remove(i);
        self.dirty.retain(|&d| d as usize != i);
        if i != last {
            let moved = self.hasher.key(&self.slots[i].key);
            if let Some(n) = self.index.find_mut(moved, |&j| j as usize == last) {
                *n = i as u32;
            }
            for d in &mut self.dirty {
                if *d as usize == last {
                    *d = i as u32;
                }
            }
        }
    }

    /// Hands every dirty document to `write` (key bytes and document, `None` for a
    /// deleted one) and marks them clean. Keys whose change was rolled back are skipped.
    pub fn flush<E>(
        &mut self,
        mut write: impl FnMut(&[u8], Option<&D>) -> Result<(), E>,
    ) -> Result<(), E> {
        for i in std::mem::take(&mut self.dirty) {
            if let Some(slot) = self.slots.get_mut(i as usize)
                && slot.entry.dirty
            {
                write(&slot.key, slot.entry.doc.as_ref())?;
                slot.entry.dirty = false;
            }
        }
        Ok(())
    }

    /// Drops every clean entry when the table holds more than `max` (a write-back cache
    /// bounds its memory this way; dirty entries are never dropped).
    pub fn shrink_to(&mut self, max: usize) {
        if self.slots.len() <= max {
            return;
        }
        self.slots.retain(|s| s.entry.dirty);
        self.index.clear();
        self.dirty.clear();
        for (i, slot) in self.slots.iter().enumerate() {
            let (slots, hasher) = (&self.slots, &self.hasher);
            self.index
                .insert_unique(hasher.key(&slot.key), i as u32, |&j| {
                    slots.get(j as usize).map_or(0, |s| hasher.key(&s.key))
                });
            self.dirty.push(i as u32);
        }
    }

    /// Every existing document, in no particular order.
    pub fn documents(&self) -> impl Iterator<Item = (&[u8], &D)> {
        self.slots
            .iter()
            .filter_map(|s| s.entry.doc.as_ref().map(|d| (&*s.key, d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flushed(table: &mut DocTable<i64>) -> Vec<(Vec<u8>, Option<i64>)> {
        let mut out = Vec::new();
        let written: Result<(), ()> = table.flush(|k, d| {
            out.push((k.to_vec(), d.copied()));
            Ok(())
        });
        assert!(written.is_ok());
        out.sort();
        out
    }

    #[test]
    fn loads_once_and_flushes_each_changed_document_once() {
        let mut table = DocTable::new();
        let mut loads = 0;
        for _ in 0..3 {
            let entry = table.entry_or_load(b"a", |_| {
                loads += 1;
                Some(1)
            });
            if let Some(doc) = &mut entry.doc {
                *doc += 1;
            }
            table.mark_dirty(b"a");
        }
        table.entry_or_load(b"b", |_| None);
        table.put(b"c", None);
        assert_eq!(loads, 1);
        assert_eq!(
            flushed(&mut table),
            vec![(b"a".to_vec(), Some(4)), (b"c".to_vec(), None)]
        );
        // Clean now: nothing more to write, and a clean cache can be shrunk.
        assert!(flushed(&mut table).is_empty());
        table.shrink_to(1);
        assert!(table.is_empty());
    }

    #[test]
    fn a_rolled_back_change_is_not_written() {
        let mut table = DocTable::new();
        let before = table.entry_or_load(b"k", |_| Some(7)).clone();
        table.put(b"k", Some(8));
        table.restore(b"k", before);
        table.put(b"n", Some(1));
        table.forget(b"n");
        assert!(flushed(&mut table).is_empty());
        assert_eq!(table.get(b"k").and_then(|e| e.doc), Some(7));
    }

    #[test]
    fn forgetting_an_entry_keeps_every_other_one_reachable_and_dirty() {
        let mut table = DocTable::new();
        for (k, v) in [(b"a", 1), (b"b", 2), (b"c", 3), (b"d", 4)] {
            table.put(k, Some(v));
        }
        // The last slot moves into the hole of the first.
        table.forget(b"a");
        table.forget(b"c");
        assert_eq!(table.len(), 2);
        assert!(table.get(b"a").is_none() && table.get(b"c").is_none());
        assert_eq!(table.get(b"d").and_then(|e| e.doc), Some(4));
        assert_eq!(
            flushed(&mut table),
            vec![(b"b".to_vec(), Some(2)), (b"d".to_vec(), Some(4))]
        );
        // Still a working table afterwards, through growth.
        for i in 0..1000u32 {
            table.put(&i.to_be_bytes(), Some(i64::from(i)));
        }
        assert_eq!(table.get(&7u32.to_be_bytes()).and_then(|e| e.doc), Some(7));
        assert_eq!(table.get(b"b").and_then(|e| e.doc), Some(2));
        assert_eq!(flushed(&mut table).len(), 1000);
    }

    #[test]
    fn short_key_comparison_is_byte_equality() {
        for n in 0..=24u8 {
            let a: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert!(same_key(&a, &a.clone()));
            for at in 0..a.len() {
                let mut b = a.clone();
                b[at] ^= 1;
                assert!(!same_key(&a, &b), "length {n}, byte {at}");
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(!same_key(&a, &longer));
        }
    }

    #[test]
    fn a_text_probe_and_its_encoded_key_find_the_same_entry() {
        use datamesh_stdlib::Value;
        let encoded = |parts: &[Value]| storage::encode_key(parts);
        let mut table = DocTable::new();
        // Stored through the encoded bytes, found through the text, and back.
        table.put(&encoded(&[Value::str("acc-1")]), Some(1));
        let probe = TextKey::new("acc-1").map(|k| table.update(k, |_| None, |d| (*d, false)));
        assert_eq!(probe, Some(Some(1)));
        for text in [
            "",
            "a",
            "acc-2",
            "a much longer account name, past sixteen bytes",
        ] {
            let Some(key) = TextKey::new(text) else {
                panic!("{text:?} has no 0 byte");
            };
            table.update(key, |_| Some(2), |_| ((), true));
            assert_eq!(
                table.get(&encoded(&[Value::str(text)])).and_then(|e| e.doc),
                Some(2)
            );
        }
        // Keys that only look alike: another type, two parts, an escaped 0 byte.
        let lookalikes = [
            encoded(&[Value::str("acc-1"), Value::str("x")]),
            encoded(&[Value::str("acc-1\0")]),
            encoded(&[Value::Int(7)]),
        ];
        for key in &lookalikes {
            table.put(key, Some(3));
        }
        assert!(TextKey::new("acc-1\0").is_none());
        let probe = TextKey::new("acc-1").map(|k| table.update(k, |_| None, |d| (*d, false)));
        assert_eq!(probe, Some(Some(1)));
        for key in &lookalikes {
            assert_eq!(table.get(key).and_then(|e| e.doc), Some(3));
        }
        // Through growth (every key rehashed from its stored bytes).
        for i in 0..2000 {
            table.put(&encoded(&[Value::str(format!("k{i}"))]), Some(i));
        }
        let found = TextKey::new("k1234").map(|k| table.update(k, |_| None, |d| (*d, false)));
        assert_eq!(found, Some(Some(1234)));
        assert_eq!(table.get(&lookalikes[1]).and_then(|e| e.doc), Some(3));
    }

    #[test]
    fn the_single_document_probe_finds_the_single_document_key() {
        use datamesh_stdlib::Value;
        let single = storage::single_document_key();
        let mut table = DocTable::new();
        // Neighbours a probe must not take for it: an empty key and a key that starts
        // with the same byte.
        table.put(b"", Some(0));
        table.put(&storage::encode_key(&[Value::Int(0)]), Some(9));
        table.update(SingleDocument, |_| Some(1), |d| (*d, false));
        assert_eq!(table.get(single).and_then(|e| e.doc), Some(1));
        table.put(single, Some(5));
        assert_eq!(
            table.update(SingleDocument, |_| None, |d| (*d, false)),
            Some(5)
        );
        for i in 0..1000 {
            table.put(format!("k{i}").as_bytes(), Some(i));
        }
        assert_eq!(
            table.update(SingleDocument, |_| None, |d| (*d, false)),
            Some(5)
        );
        assert_eq!(table.get(b"").and_then(|e| e.doc), Some(0));
        assert_eq!(SingleDocument.encoded().as_slice(), single);
    }

    #[test]
    fn every_table_has_its_own_random_seed() {
        // Keys come from clients: a seed they could know would let them pick keys that
        // collide. Two tables (and so two processes) hash the same keys differently.
        let a = DocTable::<i64>::new();
        let b = DocTable::<i64>::new();
        let keys: [&[u8]; 3] = [
            b"acc-1",
            &storage::encode_key(&[datamesh_stdlib::Value::Int(7)]),
            b"",
        ];
        let differ = keys
            .iter()
            .filter(|k| a.key_hash(k) != b.key_hash(k))
            .count();
        assert_eq!(differ, keys.len(), "two tables hash keys alike");
        // Within one table a hash is stable, and probes agree with it.
        assert_eq!(a.key_hash(b"acc-1"), a.key_hash(b"acc-1"));
        let text = storage::encode_key(&[datamesh_stdlib::Value::str("acc-1")]);
        let probe = TextKey::new("acc-1").map(|k| k.hash(&a.hasher));
        assert_eq!(probe, Some(a.key_hash(&text)));
        assert_eq!(
            SingleDocument.hash(&a.hasher),
            a.key_hash(storage::single_document_key())
        );
    }

    #[test]
    fn shrinking_keeps_dirty_entries() {
        let mut table = DocTable::new();
        table.entry_or_load(b"clean", |_| Some(1));
        table.put(b"dirty", Some(2));
        table.shrink_to(0);
        assert_eq!(table.len(), 1);
        assert_eq!(flushed(&mut table), vec![(b"dirty".to_vec(), Some(2))]);
    }
}
