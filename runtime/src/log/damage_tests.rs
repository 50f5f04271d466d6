//! Damage tests: what the log does with flipped, zeroed and truncated bytes in its
//! segments and idx files, a newer format, a segment of another log, an id reused for
//! other content, and what `repair` reports and does.
//!
//! The corruption matrix ([`the_corruption_matrix_never_serves_a_hole_or_less_silently`])
//! damages every file of a log at many offsets, three ways each, and checks the one
//! property that matters: the log refuses to open with a clear error, or it serves
//! exactly the acknowledged records (every read either returns the acknowledged record
//! or fails as corrupt, and damage the reads meet is found by the scrub), and it serves
//! fewer only when the damage lies in the last group of the active segment, which is
//! what a torn write looks like, and then says so (`truncated_bytes`).

use super::format::{FRAME_HEADER, SEGMENT_HEADER};
use super::tests::{runtime, temp_dir};
use super::*;

fn event(stream: &str, id: &str, n: u32) -> NewEvent {
    NewEvent {
        event_type: "Deposited".to_owned(),
        payload: format!(
            "{{\"n\":{n},\"pad\":\"{}\"}}",
            "p".repeat((n % 13) as usize)
        )
        .into_bytes(),
        stream: stream.to_owned(),
        id: id.to_owned(),
        origin: String::new(),
        time: None,
    }
}

fn config(dir: &Path, segment_bytes: u64) -> LogConfig {
    LogConfig {
        dir: dir.to_owned(),
        segment_bytes,
    }
}

/// Appends `groups` requests of 1-3 events; returns every acknowledged record's
/// (position, payload) and the byte offset in the last segment where the last group
/// starts.
fn build(dir: &Path, segment_bytes: u64, groups: u32) -> Vec<Record> {
    let rt = runtime();
    let (log, _) = Log::open(config(dir, segment_bytes)).expect("open");
    for n in 0..groups {
        let batch: Vec<NewEvent> = (0..=n % 3)
            .map(|k| {
                event(
                    &format!("s-{}", (n + k) % 5),
                    &format!("id-{n}-{k}"),
                    n * 10 + k,
                )
            })
            .collect();
        rt.block_on(log.append(batch, vec![])).expect("append");
    }
    let records = log.read(0, 100_000).expect("read");
    log.close();
    records
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    out.sort();
    out
}

fn copy_log(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("dir") {
        let path = entry.expect("entry").path();
        if let Some(name) = path.file_name() {
            std::fs::copy(&path, to.join(name)).expect("copy");
        }
    }
}

/// Byte offset of the frame of `position` in its segment (scanning the file).
fn frame_offset(path: &Path, first: u64, position: u64) -> u64 {
    let file = File::open(path).expect("open");
    let scan = index::scan(first, &file).expect("scan");
    scan.segment.offsets[(position - first) as usize]
}

#[test]
fn damage_inside_the_active_segment_followed_by_intact_groups_refuses_to_open() {
    let guard = temp_dir("active");
    let dir = guard.path();
    let acked = build(dir, 1 << 20, 120);
    let path = dir.join(segment_name(0));
    // Flip one payload byte of a record in the middle: over a hundred acknowledged
    // records (many groups) follow it.
    let victim = acked.len() as u64 / 2;
    let at = frame_offset(&path, 0, victim) + FRAME_HEADER as u64 + 30;
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[at as usize] ^= 0x10;
    std::fs::write(&path, &bytes).expect("write");
    match Log::open(config(dir, 1 << 20)) {
        Err(e @ LogError::Damaged { .. }) => {
            let LogError::Damaged {
                position, intact, ..
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(*position, victim);
            assert_eq!(*intact, acked.len() as u64 - victim - 1);
            let message = e.to_string();
            assert!(message.contains("datamesh repair"), "{message}");
            assert!(message.contains("not a torn write"), "{message}");
        }
        Err(e) => panic!("expected Damaged, got {e}"),
        Ok((log, recovery)) => panic!(
            "opened with head {} ({recovery:?}): acknowledged events were cut",
            log.head()
        ),
    }
    // Refusing changed nothing.
    assert_eq!(std::fs::read(&path).expect("read"), bytes);

    // Repair: a dry run reports, and changes nothing.
    let report = repair::inspect(dir).expect("inspect");
    assert_eq!(report.kept, victim);
    assert_eq!(report.damage.as_ref().map(|d| d.position), Some(victim));
    assert_eq!(
        report.salvaged,
        (victim + 1..acked.len() as u64).collect::<Vec<_>>()
    );
    assert_eq!(report.unreadable(), 1);
    assert!(report.to_string().contains("--apply"), "{report}");
    assert_eq!(std::fs::read(&path).expect("read"), bytes);
    // Applied: the log is the verified prefix, the rest is saved.
    let report = repair::apply(dir).expect("apply");
    let saved = report.saved_to.clone().expect("saved");
    let lines = std::fs::read_to_string(saved.join("dropped.jsonl")).expect("jsonl");
    assert_eq!(lines.lines().count(), acked.len() - victim as usize - 1);
    let first_line: serde_json::Value =
        serde_json::from_str(lines.lines().next().expect("a line")).expect("json");
    let expected = &acked[victim as usize + 1];
    assert_eq!(first_line["type"], "Deposited");
    assert_eq!(first_line["id"], expected.id.as_str());
    assert_eq!(first_line["stream"], expected.stream.as_str());
    assert_eq!(
        first_line["data"],
        serde_json::from_slice::<serde_json::Value>(&expected.payload).expect("payload")
    );
    let (log, recovery) = Log::open(config(dir, 1 << 20)).expect("open after repair");
    assert_eq!((log.head(), recovery.truncated_bytes), (victim, 0));
    assert_eq!(
        log.read(0, 100_000).expect("read"),
        acked[..victim as usize]
    );
    log.close();
    let _ = std::fs::remove_dir_all(saved);
}

#[test]
fn a_torn_last_group_is_cut_even_with_intact_frames_inside_it() {
    let guard = temp_dir("torn-group");
    let dir = guard.path();
    // 9 requests: the last (request 8) is one group of 3 events.
    let acked = build(dir, 1 << 20, 9);
    let path = dir.join(segment_name(0));
    // The last request was one group of several events: zero part of its first
    // frame (its later frames stay intact), as a crash before the sync could leave
    // it. No intact frame after the damage starts a group, so nothing proves that any
    // of it was acknowledged.
    let last_group = acked.len() as u64 - 3;
    let at = last_group_start(&acked, 9, &path, 0) as usize;
    let mut bytes = std::fs::read(&path).expect("read");
    for b in &mut bytes[at + 4..at + 20] {
        *b = 0;
    }
    std::fs::write(&path, &bytes).expect("write");
    let (log, recovery) = Log::open(config(dir, 1 << 20)).expect("a torn tail opens");
    assert_eq!(log.head(), last_group);
    assert!(recovery.truncated_bytes > 0);
    log.close();
}

#[test]
fn a_group_is_all_in_the_log_or_none_of_it() {
    // The last request is one group of 3 events. A crash can leave its first frames
    // whole on disk and the last torn, or not written at all: either way none of the
    // group may survive (it was never acknowledged, and a batch is atomic: a retry
    // of it must not meet half of it as a partial duplicate).
    for (case, harm) in [
        ("last-frame-torn", 0usize),
        ("last-frame-missing", 1),
        ("last-frame-half", 2),
    ] {
        let guard = temp_dir(case);
        let dir = guard.path();
        let acked = build(dir, 1 << 20, 9);
        let path = dir.join(segment_name(0));
        let group = acked.len() as u64 - 3;
        let last_frame = frame_offset(&path, 0, acked.len() as u64 - 1) as usize;
        let mut bytes = std::fs::read(&path).expect("read");
        match harm {
            0 => bytes[last_frame + 12..].fill(0),
            1 => bytes.truncate(last_frame),
            _ => bytes.truncate(last_frame + (bytes.len() - last_frame) / 2),
        }
        std::fs::write(&path, &bytes).expect("write");
        let (log, recovery) = Log::open(config(dir, 1 << 20)).expect("a torn tail opens");
        assert_eq!(log.head(), group, "{case}");
        assert!(recovery.truncated_bytes > 0, "{case}");
        assert_eq!(
            log.read(0, 1000).expect("read"),
            acked[..group as usize],
            "{case}"
        );
        // The batch is retried whole and lands whole.
        let rt = runtime();
        let retry: Vec<NewEvent> = acked[group as usize..]
            .iter()
            .map(|r| NewEvent::local(&r.event_type, r.payload.clone(), &r.stream, &r.id))
            .collect();
        let appended = rt.block_on(log.append(retry, vec![])).expect("retry");
        assert_eq!(
            appended.positions,
            vec![group, group + 1, group + 2],
            "{case}"
        );
        log.close();
    }
}

#[test]
fn the_scrub_finds_damage_behind_a_valid_idx_and_reads_never_return_it() {
    let guard = temp_dir("scrub");
    let dir = guard.path();
    let acked = build(dir, 4096, 200);
    let segs = segments(dir);
    assert!(segs.len() > 3);
    // Flip a byte in the second record of the first sealed segment: the idx spot
    // checks read the first and the last and a few evenly spaced ones.
    let at = frame_offset(&segs[0], 0, 1) + FRAME_HEADER as u64 + 30;
    let mut bytes = std::fs::read(&segs[0]).expect("read");
    bytes[at as usize] ^= 0x01;
    std::fs::write(&segs[0], &bytes).expect("write");
    let (log, recovery) = Log::open(config(dir, 4096)).expect("opens from the idx");
    assert!(recovery.indexed_segments > 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !log.scrubbed() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(log.scrubbed(), "the scrub did not finish in 30 s");
    let damage = log.damage();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert!(
        matches!(&damage[0], LogError::Corrupt { segment, .. } if segment == &segment_name(0)),
        "{damage:?}"
    );
    assert!(matches!(log.read(1, 1), Err(LogError::Corrupt { .. })));
    assert_eq!(log.read(2, 100_000).expect("after"), acked[2..]);
    log.close();
}

#[test]
fn a_newer_format_and_a_segment_of_another_log_are_refused() {
    let guard = temp_dir("format");
    let dir = guard.path();
    build(dir, 4096, 60);
    let segs = segments(dir);
    // A newer format version (header checksum right).
    let mut bytes = std::fs::read(&segs[0]).expect("read");
    let original = bytes.clone();
    bytes[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let crc = crc32fast::hash(&bytes[..40]);
    bytes[40..44].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&segs[0], &bytes).expect("write");
    let message = Log::open(config(dir, 4096)).expect_err("newer").to_string();
    assert!(message.contains("newer than this build"), "{message}");
    std::fs::write(&segs[0], &original).expect("restore");
    // A segment of another log in the same directory.
    let other_guard = temp_dir("other");
    build(other_guard.path(), 4096, 60);
    let last = segs.last().expect("segment");
    let name = last.file_name().expect("name");
    let theirs = std::fs::read(other_guard.path().join(name));
    if let Ok(theirs) = theirs {
        std::fs::write(last, theirs).expect("swap");
        let message = Log::open(config(dir, 4096)).expect_err("mixed").to_string();
        assert!(message.contains("another log"), "{message}");
    }
    // A file that is no segment at all.
    std::fs::write(
        &segs[0],
        b"hello, this is not a log segment at all, no header here..",
    )
    .expect("write");
    let message = Log::open(config(dir, 4096)).expect_err("junk").to_string();
    assert!(message.contains("not a DataMesh log segment"), "{message}");
}

#[test]
fn the_identity_is_kept_across_restarts_and_differs_between_logs() {
    let a = temp_dir("id-a");
    let b = temp_dir("id-b");
    let (log_a, recovery) = Log::open(config(a.path(), 4096)).expect("open");
    assert!(recovery.created);
    let id_a = log_a.identity();
    log_a.close();
    let (log_a, recovery) = Log::open(config(a.path(), 4096)).expect("reopen");
    assert!(!recovery.created);
    assert_eq!(log_a.identity(), id_a);
    log_a.close();
    let (log_b, _) = Log::open(config(b.path(), 4096)).expect("open");
    assert_ne!(log_b.identity(), id_a);
    log_b.close();
}

#[test]
fn an_id_reused_for_other_content_is_refused_and_an_exact_retry_deduplicates() {
    let guard = temp_dir("idconflict");
    let dir = guard.path();
    let rt = runtime();
    for restart in [false, true] {
        let (log, _) = Log::open(config(dir, 1 << 20)).expect("open");
        if !restart {
            rt.block_on(log.append(vec![event("s", "order-1", 1)], vec![]))
                .expect("append");
        }
        let retry = rt
            .block_on(log.append(vec![event("s", "order-1", 1)], vec![]))
            .expect("retry");
        assert!(retry.deduplicated);
        assert_eq!(retry.positions, vec![0]);
        for other in [
            event("s", "order-1", 2),
            event("t", "order-1", 1),
            NewEvent {
                event_type: "Withdrawn".into(),
                ..event("s", "order-1", 1)
            },
        ] {
            let refused = rt.block_on(log.append(vec![other], vec![]));
            assert!(
                matches!(&refused, Err(LogError::IdConflict { id, position: 0 }) if id == "order-1"),
                "{refused:?}"
            );
        }
        assert_eq!(log.head(), 1);
        log.close();
    }
}

#[test]
fn the_log_directory_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let guard = temp_dir("perms");
    let dir = guard.path().join("nested").join("log");
    build(&dir, 4096, 60);
    for path in [dir.clone(), guard.path().join("nested")] {
        let mode = std::fs::metadata(&path).expect("dir").permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{}", path.display());
    }
    // The idx files are written in the background: wait for one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline
        && !std::fs::read_dir(&dir)
            .expect("dir")
            .any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "idx")))
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for entry in std::fs::read_dir(&dir).expect("dir") {
        let path = entry.expect("entry").path();
        let mode = std::fs::metadata(&path).expect("file").permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", path.display());
    }
}

/// How a byte range is damaged.
#[derive(Debug, Clone, Copy)]
enum Harm {
    /// Bytes of `offset..offset + len` xor-ed with a pattern.
    Flip,
    /// `offset..offset + len` zeroed.
    Zero,
    /// The file cut at `offset`.
    Truncate,
}

/// The byte offset in the active segment where the last request of [`build`] with
/// `requests` requests starts (each request is a group of its own: they are appended
/// one at a time, request n carrying n % 3 + 1 events).
fn last_group_start(records: &[Record], requests: u32, path: &Path, first: u64) -> u64 {
    let last_len = u64::from((requests - 1) % 3 + 1);
    frame_offset(path, first, records.len() as u64 - last_len)
}

/// A pristine log and what was acknowledged, to damage copies of.
struct Matrix {
    guard: tempfile::TempDir,
    pristine: PathBuf,
    acked: Vec<Record>,
    active: PathBuf,
    /// Where the last group starts in the active segment.
    torn_from: u64,
    files: Vec<PathBuf>,
    rt: tokio::runtime::Runtime,
}

/// What one damaged copy did on open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Refused,
    ServedAll,
    CutTorn,
}

impl Matrix {
    const REQUESTS: u32 = 90;
    const SEGMENT: u64 = 2048;

    fn new(name: &str) -> Matrix {
        let guard = temp_dir(name);
        let pristine = guard.path().join("pristine");
        std::fs::create_dir_all(&pristine).expect("dir");
        let acked = build(&pristine, Self::SEGMENT, Self::REQUESTS);
        let segs = segments(&pristine);
        assert!(segs.len() >= 4, "{segs:?}");
        // The idx files are written in the background after each roll: reopen once
        // so every sealed segment has one.
        let (log, _) = Log::open(config(&pristine, Self::SEGMENT)).expect("open");
        log.close();
        let active = segs.last().expect("active").clone();
        let active_first: u64 = active
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
            .expect("first");
        let torn_from = last_group_start(&acked, Self::REQUESTS, &active, active_first);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&pristine)
            .expect("dir")
            .filter_map(|e| Some(e.ok()?.path()))
            .collect();
        files.sort();
        Matrix {
            guard,
            pristine,
            acked,
            active,
            torn_from,
            files,
            rt: runtime(),
        }
    }

    /// Damages a copy of the log (`file`, `harm` over `offset..offset + len`), opens
    /// it and checks the property (see the module documentation).
    fn case(&self, file: &Path, harm: Harm, offset: u64, len: u64) -> Outcome {
        let case_dir = self.guard.path().join("case");
        let _ = std::fs::remove_dir_all(&case_dir);
        std::fs::create_dir_all(&case_dir).expect("dir");
        copy_log(&self.pristine, &case_dir);
        let target = case_dir.join(file.file_name().expect("name"));
        let mut bytes = std::fs::read(&target).expect("read");
        let end = usize::try_from(offset + len).map_or(bytes.len(), |e| e.min(bytes.len()));
        let start = (offset as usize).min(bytes.len());
        match harm {
            Harm::Flip => bytes[start..end].iter_mut().for_each(|b| *b ^= 0x5A),
            Harm::Zero => bytes[start..end].fill(0),
            Harm::Truncate => bytes.truncate(start),
        }
        std::fs::write(&target, &bytes).expect("write");
        let what = format!("{harm:?} {len} bytes at {offset} of {}", file.display());
        let acked = &self.acked;
        match Log::open(config(&case_dir, Self::SEGMENT)) {
            Err(e) => {
                assert!(
                    matches!(
                        e,
                        LogError::Damaged { .. }
                            | LogError::Corrupt { .. }
                            | LogError::Header { .. }
                    ),
                    "{what}: unexpected error {e}"
                );
                Outcome::Refused
            }
            Ok((log, recovery)) => {
                let head = log.head();
                assert!(head <= acked.len() as u64, "{what}: more than was acked");
                let outcome = if head < acked.len() as u64 {
                    assert!(
                        file == self.active,
                        "{what}: served {head} of {} records",
                        acked.len()
                    );
                    // A truncated active segment is indistinguishable from a log that
                    // was never longer (see the Guarantees page). Flipped or zeroed
                    // bytes are cut only when they reach into the last group: then
                    // nothing intact after them starts a group, as after a torn write.
                    if !matches!(harm, Harm::Truncate) {
                        assert!(
                            recovery.truncated_bytes > 0 && offset + len > self.torn_from,
                            "{what}: cut at {head} ({recovery:?}), but the damage is before the last group (which starts at byte {})",
                            self.torn_from
                        );
                    }
                    Outcome::CutTorn
                } else {
                    Outcome::ServedAll
                };
                // Every record reads back as acknowledged, or fails as corrupt.
                let mut failed = false;
                for position in 0..head {
                    match log.read(position, 1) {
                        Ok(records) => assert_eq!(
                            records.first(),
                            acked.get(position as usize),
                            "{what}: position {position}"
                        ),
                        Err(LogError::Corrupt { .. }) => failed = true,
                        Err(e) => panic!("{what}: read {position}: {e}"),
                    }
                }
                if failed {
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
                    while !log.scrubbed() && std::time::Instant::now() < deadline {
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                    assert!(
                        !log.damage().is_empty(),
                        "{what}: a read failed, the scrub found nothing"
                    );
                }
                // The log still appends after the open.
                let appended = self
                    .rt
                    .block_on(log.append(vec![event("x", "", 1)], vec![]))
                    .expect("append after recovery");
                assert_eq!(appended.positions, vec![head]);
                log.close();
                outcome
            }
        }
    }
}

fn tally(outcomes: &[Outcome]) -> (usize, usize, usize) {
    let count = |o: Outcome| outcomes.iter().filter(|x| **x == o).count();
    (
        count(Outcome::Refused),
        count(Outcome::ServedAll),
        count(Outcome::CutTorn),
    )
}

#[test]
fn the_corruption_matrix_never_serves_a_hole_or_less_silently() {
    let matrix = Matrix::new("matrix");
    let mut outcomes = Vec::new();
    for file in &matrix.files {
        let len = std::fs::metadata(file).expect("len").len();
        let offsets: Vec<u64> = (0..len)
            .step_by(((len / 24).max(1)) as usize)
            .chain([0, 1, SEGMENT_HEADER as u64, len.saturating_sub(1)])
            .filter(|o| *o < len)
            .collect();
        for &offset in &offsets {
            for (harm, n) in [(Harm::Flip, 1), (Harm::Zero, 64), (Harm::Truncate, 0)] {
                outcomes.push(matrix.case(file, harm, offset, n));
            }
        }
    }
    let (refused, served_all, cut_torn) = tally(&outcomes);
    eprintln!(
        "corruption matrix: {} cases over {} files: {refused} refused, {served_all} served everything, {cut_torn} cut a torn last group",
        outcomes.len(),
        matrix.files.len()
    );
    assert!(refused > 0 && served_all > 0 && cut_torn > 0);
}

/// Random damage (seeded, so a failure reproduces): a file of the log, a kind, an
/// offset and a length, one damage per case, checked as the matrix checks.
/// `DATAMESH_FUZZ_CASES=N` runs N cases (default 300; `DATAMESH_FUZZ_SEED` picks
/// the seed): `DATAMESH_FUZZ_CASES=20000 cargo test --release -p datamesh-runtime --lib
/// random_damage`.
#[test]
fn random_damage_never_serves_a_hole_or_less_silently() {
    let cases: usize = std::env::var("DATAMESH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut seed: u64 = std::env::var("DATAMESH_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5EED_D47A_3E5A);
    let mut next = move || {
        // xorshift64*
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        seed.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let matrix = Matrix::new("random");
    let mut outcomes = Vec::with_capacity(cases);
    for _ in 0..cases {
        let file = &matrix.files[(next() % matrix.files.len() as u64) as usize];
        let len = std::fs::metadata(file).expect("len").len().max(1);
        let offset = next() % len;
        let (harm, n) = match next() % 3 {
            0 => (Harm::Flip, 1 + next() % 16),
            1 => (Harm::Zero, 1 + next() % 512),
            _ => (Harm::Truncate, 0),
        };
        outcomes.push(matrix.case(file, harm, offset, n));
    }
    let (refused, served_all, cut_torn) = tally(&outcomes);
    eprintln!(
        "random damage: {cases} cases: {refused} refused, {served_all} served everything, {cut_torn} cut a torn last group"
    );
}

#[test]
fn a_log_open_in_one_place_is_refused_in_another_and_by_repair() {
    let guard = temp_dir("lock");
    let (log, _) = Log::open(config(guard.path(), 4096)).expect("open");
    let second = Log::open(config(guard.path(), 4096));
    assert!(
        matches!(&second, Err(LogError::Locked(_))),
        "{:?}",
        second.map(|_| ())
    );
    assert!(matches!(
        repair::inspect(guard.path()),
        Err(LogError::Locked(_))
    ));
    assert!(matches!(
        repair::apply(guard.path()),
        Err(LogError::Locked(_))
    ));
    log.close();
    let (log, _) = Log::open(config(guard.path(), 4096)).expect("reopen once closed");
    log.close();
    assert!(repair::inspect(guard.path()).is_ok());
}
