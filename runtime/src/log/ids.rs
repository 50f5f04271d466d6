//! Compact tables of client event ids: [`IdIndex`], every id of the log and the
//! position of its event (what makes appends idempotent), and [`IdList`], one
//! segment's ids in position order (what its idx file records).
//!
//! An id costs its bytes plus a fixed-size entry, with no allocation of its own: the
//! bytes go to append-only chunks that never move, and the hash table holds where they
//! are and the event's position. The table is split into [`SHARDS`] shards picked by
//! hash, so when one grows it rehashes a sixty-fourth of the ids: a log of millions of
//! ids never stalls an append for a whole-table rehash. (A `HashMap<String, u64>`
//! cost an allocation and about 100 bytes per id, and halved W1 with ids.)
//!
//! Ids are chosen by clients, so the hash is seeded per process.

use std::hash::BuildHasher;

/// Shards of an [`IdIndex`].
const SHARDS: usize = 64;

/// Bytes per chunk of id text (an id longer than that gets a chunk of its own).
const CHUNK: usize = 1 << 20;

/// Where an id's bytes are, and its event's position.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Chunk number in the high 32 bits, byte offset in the low 32.
    at: u64,
    len: u32,
    position: u64,
}

/// Every id of the log and its event's position (see the module documentation).
#[derive(Debug)]
pub(super) struct IdIndex {
    hasher: foldhash::fast::RandomState,
    shards: Vec<hashbrown::HashTable<Entry>>,
    chunks: Vec<Vec<u8>>,
}

impl Default for IdIndex {
    fn default() -> Self {
        IdIndex::with_capacity(0)
    }
}

/// The bytes of `entry`.
fn bytes_of<'c>(chunks: &'c [Vec<u8>], entry: &Entry) -> &'c [u8] {
    let chunk = (entry.at >> 32) as usize;
    let offset = (entry.at & u64::from(u32::MAX)) as usize;
    chunks
        .get(chunk)
        .and_then(|c| c.get(offset..offset + entry.len as usize))
        .unwrap_or_default()
}

/// The shard of a hash: bits the tables use neither for buckets (the low ones) nor
/// for their tags (the top seven).
fn shard_of(hash: u64) -> usize {
    ((hash >> 40) as usize) % SHARDS
}

impl IdIndex {
    /// An empty index with room for about `ids` ids.
    pub fn with_capacity(ids: usize) -> IdIndex {
        IdIndex {
            hasher: foldhash::fast::RandomState::default(),
            shards: (0..SHARDS)
                .map(|_| hashbrown::HashTable::with_capacity(ids.div_ceil(SHARDS)))
                .collect(),
            chunks: Vec::new(),
        }
    }

    /// The hash of `id` in this index: computed once per id by the writer, which looks
    /// the id up, then records it ([`IdIndex::get_hashed`], [`IdIndex::insert_hashed`]).
    pub fn hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id.as_bytes())
    }

    /// The position of the event with this id.
    #[cfg(test)]
    pub fn get(&self, id: &str) -> Option<u64> {
        self.get_hashed(id, self.hash(id))
    }

    /// [`IdIndex::get`] with the id's [`IdIndex::hash`].
    pub fn get_hashed(&self, id: &str, hash: u64) -> Option<u64> {
        let chunks = &self.chunks;
        self.shards
            .get(shard_of(hash))?
            .find(hash, |e| bytes_of(chunks, e) == id.as_bytes())
            .map(|e| e.position)
    }

    /// Records `id` at `position`; an id already recorded keeps its first position.
    pub fn insert(&mut self, id: &str, position: u64) {
        self.insert_hashed(id, self.hash(id), position);
    }

    /// [`IdIndex::insert`] with the id's [`IdIndex::hash`].
    pub fn insert_hashed(&mut self, id: &str, hash: u64, position: u64) {
        let bytes = id.as_bytes();
        let (Ok(len), Some(shard)) = (
            u32::try_from(bytes.len()),
            self.shards.get_mut(shard_of(hash)),
        ) else {
            return;
        };
        let chunks = &mut self.chunks;
        if shard.find(hash, |e| bytes_of(chunks, e) == bytes).is_some() {
            return;
        }
        if chunks
            .last()
            .is_none_or(|c| c.capacity() - c.len() < bytes.len())
        {
            chunks.push(Vec::with_capacity(CHUNK.max(bytes.len())));
        }
        let number = chunks.len() as u64 - 1;
        let Some(chunk) = chunks.last_mut() else {
            return;
        };
        let at = (number << 32) | chunk.len() as u64;
        chunk.extend_from_slice(bytes);
        let entry = Entry { at, len, position };
        let hasher = &self.hasher;
        let chunks = &self.chunks;
        shard.insert_unique(hash, entry, |e| hasher.hash_one(bytes_of(chunks, e)));
    }
}

/// One segment's ids and their positions, in position order, in one string.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct IdList {
    text: String,
    /// (end of the id in `text`, position).
    ends: Vec<(usize, u64)>,
}

impl IdList {
    /// Adds the id of the next event that has one.
    pub fn push(&mut self, id: &str, position: u64) {
        self.text.push_str(id);
        self.ends.push((self.text.len(), position));
    }

    /// Ids in the list.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// (id, position), in position order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, u64)> {
        (0..self.ends.len()).map(|i| {
            let start = i
                .checked_sub(1)
                .and_then(|before| self.ends.get(before))
                .map_or(0, |(end, _)| *end);
            let (end, position) = self.ends.get(i).copied().unwrap_or((start, 0));
            (self.text.get(start..end).unwrap_or(""), position)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_found_exactly_and_keep_their_first_position() {
        let mut index = IdIndex::with_capacity(4);
        // Enough ids to grow every shard several times and fill several chunks.
        let n = 200_000u64;
        let long = "x".repeat(CHUNK + 10);
        for p in 0..n {
            index.insert(&format!("order-{p}"), p);
        }
        index.insert(&long, n);
        index.insert("", n + 1);
        for p in (0..n).step_by(997) {
            assert_eq!(index.get(&format!("order-{p}")), Some(p));
        }
        assert_eq!(index.get(&long), Some(n));
        assert_eq!(index.get(""), Some(n + 1));
        // Look-alikes are not found: a prefix, an extension, another case.
        assert_eq!(index.get("order-1000000"), None);
        assert_eq!(index.get("order-"), None);
        assert_eq!(index.get("order-10x"), None);
        assert_eq!(index.get("ORDER-10"), None);
        assert_eq!(index.get(&long[1..]), None);
        // A second insert of a known id changes nothing.
        index.insert("order-7", 99);
        assert_eq!(index.get("order-7"), Some(7));
    }

    #[test]
    fn an_id_list_gives_back_what_went_in() {
        let mut list = IdList::default();
        assert_eq!(list.len(), 0);
        let ids = [("a", 3), ("", 4), ("ünïcode-id", 9), ("zz", 10)];
        for (id, p) in ids {
            list.push(id, p);
        }
        assert_eq!(list.len(), 4);
        assert_eq!(list.iter().collect::<Vec<_>>(), ids.to_vec());
    }
}
