//! Seeded mutation testing of the store's decoders (`storage::decode_doc` and
//! `storage::decode_key`), which read whatever is on disk.
//!
//! Valid documents and keys of every kind of value are generated from a fixed seed,
//! encoded, and mutated (bytes flipped, set to boundary values, inserted, deleted,
//! duplicated, truncated, lengths rewritten to huge LEB128 values, tags swapped). For
//! each mutated encoding the decoder must not panic, must not allocate from a corrupt
//! length (every count is checked against the bytes left: the run's peak allocation
//! is bounded by a counting allocator), and must either refuse the bytes or return a
//! value whose encoding is exactly those bytes (the decoders accept only canonical
//! encodings).
//!
//! The run is deterministic: the seed is fixed (`DATAMESH_FUZZ_SEED` overrides it) and
//! the number of cases is `DATAMESH_FUZZ_CASES` (default 1,000,000, about 10 s in a debug
//! build on one core). A longer run:
//!
//! ```text
//! DATAMESH_FUZZ_CASES=5000000 cargo test --release -p datamesh-compiler --test fuzz_storage -- --nocapture
//! ```
//!
//! The test prints the number of cases it ran and how many mutations decoded.

mod seeded;

use seeded::{Rng, env_u64};

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use datamesh_compiler::exec::storage::{decode_doc, decode_key, encode_doc, encode_key};
use datamesh_stdlib::Value;

/// Counts the largest single allocation, so a decoder that reserves from a corrupt
/// length is caught even when the allocation would succeed.
struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const TEXTS: [&str; 8] = ["", "a", "héllo", "😀x", "a\0b", "\u{7f}", "key-1", "zz"];

fn scalar(rng: &mut Rng) -> Value {
    let int = |rng: &mut Rng| match rng.below(4) {
        0 => 0,
        1 => i64::MIN,
        2 => i64::MAX,
        _ => rng.next() as i64,
    };
    match rng.below(8) {
        0 => Value::None,
        1 => Value::Bool(rng.one_in(2)),
        2 => Value::Int(int(rng)),
        3 => Value::Float([0.0, -0.0, 1.5, f64::MAX, f64::MIN_POSITIVE][rng.below(5)]),
        4 => Value::str(TEXTS[rng.below(TEXTS.len())].repeat(1 + rng.below(3))),
        5 => Value::Timestamp(int(rng)),
        6 => Value::Duration(int(rng)),
        _ => Value::str("x".repeat(rng.below(300))),
    }
}

fn value(rng: &mut Rng) -> Value {
    let n = rng.below(6);
    match rng.below(6) {
        0 => Value::List((0..n).map(|_| scalar(rng)).collect()),
        1 => Value::Set((0..n).map(|_| scalar(rng)).collect::<BTreeSet<_>>()),
        2 => Value::Map(
            (0..n)
                .map(|_| (scalar(rng), scalar(rng)))
                .collect::<BTreeMap<_, _>>(),
        ),
        _ => scalar(rng),
    }
}

fn key_part(rng: &mut Rng) -> Value {
    match rng.below(5) {
        0 => Value::Bool(rng.one_in(2)),
        1 => Value::Int(rng.next() as i64),
        2 => Value::Timestamp(rng.next() as i64),
        3 => Value::Duration(rng.next() as i64),
        _ => Value::str(TEXTS[rng.below(TEXTS.len())]),
    }
}

/// LEB128 of `n`, for planting huge lengths.
fn leb(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// One to four random edits of `bytes`.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(9) {
            0 if at < bytes.len() => bytes[at] ^= 1 << rng.below(8),
            1 if at < bytes.len() => bytes[at] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5)],
            2 => bytes.insert(at, rng.next() as u8),
            3 if at < bytes.len() => {
                bytes.remove(at);
            }
            4 => bytes.truncate(at),
            5 => {
                // A huge or near-boundary length, as a corrupt length would read.
                let n = [u64::MAX, 1 << 40, 1 << 32, 1 << 20, 0x3fff][rng.below(5)];
                let planted = leb(n);
                let at = at.min(bytes.len());
                bytes.splice(at..at, planted);
            }
            6 if at < bytes.len() => bytes[at] = rng.below(12) as u8, // another tag
            7 if !bytes.is_empty() => {
                let from = rng.below(bytes.len());
                let len = rng.below(bytes.len() - from + 1);
                let piece = bytes[from..from + len].to_vec();
                let at = at.min(bytes.len());
                bytes.splice(at..at, piece);
            }
            _ => bytes.push(rng.next() as u8),
        }
    }
}

/// No single allocation while decoding may be larger than this (the inputs are a few
/// KiB; a decoder trusting a corrupt length would ask for far more).
const ALLOCATION_BOUND: usize = 1 << 20;

#[test]
fn mutated_documents_and_keys_decode_to_their_own_bytes_or_are_refused() {
    let cases = env_u64("DATAMESH_FUZZ_CASES", 1_000_000);
    let mut rng = Rng::new(env_u64("DATAMESH_FUZZ_SEED", 0x005e_ed0f_da7a_3e5a));
    let (mut docs_decoded, mut keys_decoded) = (0u64, 0u64);
    for case in 0..cases {
        // Documents.
        let doc: Vec<Value> = (0..rng.below(6)).map(|_| value(&mut rng)).collect();
        let valid = encode_doc(&doc);
        assert_eq!(
            decode_doc(&valid).as_ref(),
            Some(&doc),
            "case {case}: round trip"
        );
        let mut bytes = valid;
        mutate(&mut rng, &mut bytes);
        LARGEST.store(0, Ordering::Relaxed);
        let decoded = decode_doc(&bytes);
        let largest = LARGEST.load(Ordering::Relaxed);
        assert!(
            largest <= ALLOCATION_BOUND,
            "case {case}: decoding {bytes:?} allocated {largest} bytes at once"
        );
        if let Some(fields) = decoded {
            docs_decoded += 1;
            assert_eq!(encode_doc(&fields), bytes, "case {case}: {fields:?}");
        }

        // Keys.
        let parts: Vec<Value> = (0..rng.below(4)).map(|_| key_part(&mut rng)).collect();
        let valid = encode_key(&parts);
        assert_eq!(
            decode_key(&valid).as_ref(),
            Some(&parts),
            "case {case}: key"
        );
        let mut bytes = valid;
        mutate(&mut rng, &mut bytes);
        LARGEST.store(0, Ordering::Relaxed);
        let decoded = decode_key(&bytes);
        let largest = LARGEST.load(Ordering::Relaxed);
        assert!(
            largest <= ALLOCATION_BOUND,
            "case {case}: decoding key {bytes:?} allocated {largest} bytes at once"
        );
        if let Some(parts) = decoded {
            keys_decoded += 1;
            assert_eq!(encode_key(&parts), bytes, "case {case}: key {parts:?}");
        }
    }
    println!(
        "fuzz_storage: {cases} cases (a document and a key each); mutations that still \
         decoded: {docs_decoded} documents, {keys_decoded} keys, each re-encoding to its bytes"
    );
}

#[test]
fn corrupt_encodings_found_by_the_fuzzer_are_refused() {
    // Corrupt encodings the decoders must refuse. The first five were accepted before
    // the decoders were made strict, decoding to a value that does not encode back to
    // its bytes, or to a NaN no value may hold.
    let cases: &[(&str, &[u8])] = &[
        ("a non-minimal length", &[0x81, 0x00, 0x00]),
        ("a NaN float", &[1, 4, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f]),
        ("a set out of order", &[1, 9, 2, 2, 1]),
        ("a set with a repeat", &[1, 9, 2, 1, 1]),
        ("a map key repeated", &[1, 10, 2, 0, 1, 0, 2]),
        (
            "a count past the bytes",
            &[1, 8, 0xff, 0xff, 0xff, 0xff, 0x0f],
        ),
        (
            "a length past 64 bits",
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
        ),
    ];
    for (what, bytes) in cases {
        assert_eq!(decode_doc(bytes), None, "{what}");
    }
    // Collections nested past any document's depth are refused, not recursed into
    // (this overflowed the stack before).
    let mut deep = vec![1];
    deep.extend(std::iter::repeat_n([8u8, 1], 100_000).flatten());
    deep.push(0);
    assert_eq!(decode_doc(&deep), None);
    // The first two were accepted before.
    for (what, key) in [
        ("the empty key", &[][..]),
        ("a bool other than 0 or 1", &[1, 2][..]),
        ("an unterminated string", &[3, b'a'][..]),
    ] {
        assert_eq!(decode_key(key), None, "{what}");
    }
}
