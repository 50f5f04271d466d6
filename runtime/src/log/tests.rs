//! Log unit tests: appends, reads, versions, idempotency, recovery, rolling.

use super::*;

fn event(stream: &str, id: &str, n: u32) -> NewEvent {
    NewEvent {
        event_type: "Deposited".to_owned(),
        payload: format!("{{\"n\":{n}}}").into_bytes(),
        stream: stream.to_owned(),
        id: id.to_owned(),
        origin: String::new(),
        time: None,
    }
}

/// A fresh directory, removed when the returned guard is dropped.
pub(super) fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("datamesh-log-{name}-"))
        .tempdir()
        .expect("temp dir")
}

pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn appends_are_dense_ordered_and_readable() {
    let dir_guard = temp_dir("dense");
    let dir = dir_guard.path().to_path_buf();
    let rt = runtime();
    let (log, recovery) = Log::open(LogConfig::new(&dir)).expect("open");
    assert_eq!(recovery.records, 0);
    let a = rt
        .block_on(log.append(vec![event("s1", "", 1), event("s2", "", 2)], vec![]))
        .expect("append");
    assert_eq!(a.positions, vec![0, 1]);
    let b = rt
        .block_on(log.append(vec![event("s1", "", 3)], vec![]))
        .expect("append");
    assert_eq!(b.positions, vec![2]);
    assert_eq!(log.head(), 3);
    let records = log.read(0, 10).expect("read");
    assert_eq!(
        records.iter().map(|r| r.position).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(records[2].stream_version, 1);
    assert_eq!(log.read(1, 1).expect("read")[0].payload, b"{\"n\":2}");
    let s1 = log.read_stream("s1", 0, 10).expect("stream");
    assert_eq!(
        s1.iter().map(|r| r.position).collect::<Vec<_>>(),
        vec![0, 2]
    );
    assert_eq!(log.stream_version("s1"), Some(1));
    assert_eq!(log.stream_version("nope"), None);
    log.close();
}

#[test]
fn expected_versions_fail_the_whole_request() {
    let dir_guard = temp_dir("versions");
    let dir = dir_guard.path().to_path_buf();
    let rt = runtime();
    let (log, _) = Log::open(LogConfig::new(&dir)).expect("open");
    rt.block_on(log.append(
        vec![event("acc", "", 1)],
        vec![("acc".into(), Expected::NoStream)],
    ))
    .expect("first");
    let conflict = rt.block_on(log.append(
        vec![event("acc", "", 2), event("other", "", 3)],
        vec![("acc".into(), Expected::NoStream)],
    ));
    assert_eq!(
        conflict,
        Err(LogError::VersionConflict {
            stream: "acc".into(),
            expected: Expected::NoStream,
            actual: Some(0)
        })
    );
    assert_eq!(log.head(), 1, "nothing of the failed request was appended");
    rt.block_on(log.append(
        vec![event("acc", "", 2)],
        vec![("acc".into(), Expected::Exact(0))],
    ))
    .expect("exact");
    let stale = rt.block_on(log.append(
        vec![event("acc", "", 3)],
        vec![("acc".into(), Expected::Exact(0))],
    ));
    assert!(matches!(
        stale,
        Err(LogError::VersionConflict {
            actual: Some(1),
            ..
        })
    ));
}

#[test]
fn stream_versions_of_short_long_and_empty_names_survive_a_restart() {
    let dir_guard = temp_dir("names");
    let dir = dir_guard.path().to_path_buf();
    let rt = runtime();
    // Names of every length around the writer's inline limit (31 bytes), and the
    // multi-byte ones whose byte length is what counts.
    let names: Vec<String> = [0usize, 1, 30, 31, 32, 33, 200]
        .iter()
        .map(|&n| "s".repeat(n))
        .chain(["é".repeat(15), "é".repeat(16)])
        .filter(|n| !n.is_empty())
        .collect();
    let (log, _) = Log::open(LogConfig::new(&dir)).expect("open");
    for round in 0..2u32 {
        let batch: Vec<NewEvent> = names.iter().map(|n| event(n, "", round)).collect();
        let expected: Vec<(String, Expected)> = names
            .iter()
            .map(|n| {
                let e = if round == 0 {
                    Expected::NoStream
                } else {
                    Expected::Exact(0)
                };
                (n.clone(), e)
            })
            .collect();
        rt.block_on(log.append(batch, expected)).expect("append");
    }
    log.close();
    let (log, _) = Log::open(LogConfig::new(&dir)).expect("reopen");
    for name in &names {
        assert_eq!(log.stream_version(name), Some(1), "{} bytes", name.len());
        let stale = rt.block_on(log.append(
            vec![event(name, "", 9)],
            vec![(name.clone(), Expected::Exact(0))],
        ));
        assert!(
            matches!(
                stale,
                Err(LogError::VersionConflict {
                    actual: Some(1),
                    ..
                })
            ),
            "{} bytes: {stale:?}",
            name.len()
        );
        rt.block_on(log.append(
            vec![event(name, "", 9)],
            vec![(name.clone(), Expected::Exact(1))],
        ))
        .expect("the next version");
        assert_eq!(log.read_stream(name, 0, 10).expect("stream").len(), 3);
    }
    // A name one byte longer than another is another stream.
    assert_eq!(log.stream_version(&"s".repeat(29)), None);
    log.close();
}

#[test]
fn appends_are_idempotent_by_id_across_restarts() {
    let dir_guard = temp_dir("ids");
    let dir = dir_guard.path().to_path_buf();
    let rt = runtime();
    {
        let (log, _) = Log::open(LogConfig::new(&dir)).expect("open");
        let first = rt
            .block_on(log.append(vec![event("s", "a", 1), event("s", "b", 2)], vec![]))
            .expect("append");
        assert_eq!(first.positions, vec![0, 1]);
        let again = rt
            .block_on(log.append(vec![event("s", "a", 1), event("s", "b", 2)], vec![]))
            .expect("retry");
        assert!(again.deduplicated);
        assert_eq!(again.positions, vec![0, 1]);
        // The retry wrote nothing, so it cost no fdatasync.
        assert_eq!(log.stats().syncs.get(), 1);
        assert_eq!(log.stats().events.get(), 2);
        log.close();
    }
    let (log, recovery) = Log::open(LogConfig::new(&dir)).expect("reopen");
    assert_eq!(recovery.records, 2);
    let retry = rt
        .block_on(log.append(vec![event("s", "a", 1), event("s", "b", 2)], vec![]))
        .expect("retry after restart");
    assert!(retry.deduplicated);
    assert_eq!(retry.positions, vec![0, 1]);
    assert_eq!(log.head(), 2);
    let partial = rt.block_on(log.append(vec![event("s", "a", 1), event("s", "c", 3)], vec![]));
    assert!(matches!(
        partial,
        Err(LogError::PartialDuplicate { position: 0, .. })
    ));
    let twice = rt.block_on(log.append(vec![event("s", "x", 1), event("s", "x", 3)], vec![]));
    assert_eq!(twice, Err(LogError::DuplicateIdInRequest("x".into())));
    assert_eq!(log.head(), 2);
    log.close();
}

#[test]
fn a_torn_tail_is_cut_on_open() {
    let dir_guard = temp_dir("torn");
    let dir = dir_guard.path().to_path_buf();
    let rt = runtime();
    {
        let (log, _) = Log::open(LogConfig::new(&dir)).expect("open");
        for n in 0..5 {
            rt.block_on(log.append(vec![event("s", "", n)], vec![]))
                .expect("append");
        }
        log.close();
    }
    let segment = dir.join(segment_name(0));
    let len = std::fs::metadata(&segment).expect("segment").len();
    // Cut the last record in half.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .expect("open")
        .set_len(len - 7)
        .expect("truncate");
    let (log, recovery) = Log::open(LogConfig::new(&dir)).expect("reopen");
    assert_eq!(recovery.records, 4);
    assert!(recovery.truncated_bytes > 0);
    assert_eq!(log.head(), 4);
    // The log goes on from the cut, densely.
    let next = rt
        .block_on(log.append(vec![event("s", "", 9)], vec![]))
        .expect("append");
    assert_eq!(next.positions, vec![4]);
    log.close();
    // Garbage after the last record is cut too.
    let mut bytes = std::fs::read(&segment).expect("read");
    bytes.extend_from_slice(&[0xAB; 33]);
    std::fs::write(&segment, &bytes).expect("write");
    let (log, recovery) = Log::open(LogConfig::new(&dir)).expect("reopen");
    assert_eq!((recovery.records, recovery.truncated_bytes), (5, 33));
    assert_eq!(log.read(4, 1).expect("read")[0].payload, b"{\"n\":9}");
    log.close();
}

/// The records of segment `first` as a scan finds them (offsets, length).
fn scanned(dir: &Path, first: u64) -> index::SegmentIndex {
    let file = File::open(dir.join(segment_name(first))).expect("segment");
    index::scan(first, &file).expect("scan").segment
}

/// The offset after the last record of segment `first` (its records' length).
fn records_len(dir: &Path, first: u64) -> u64 {
    scanned(dir, first).len
}

/// Opens the log in `dir` and appends `n` single-event requests to stream `s` (with
/// ids `id0`, `id1`, ... when `ids`).
fn open_appended(dir: &Path, rt: &tokio::runtime::Runtime, n: u32, ids: bool) -> Log {
    let (log, _) = Log::open(LogConfig::new(dir)).expect("open");
    for i in 0..n {
        let id = if ids { format!("id{i}") } else { String::new() };
        rt.block_on(log.append(vec![event("s", &id, i)], vec![]))
            .expect("append");
    }
    log
}

#[test]
fn the_writer_appends_into_zeroed_space_and_a_close_cuts_it() {
    let dir_guard = temp_dir("zeroed");
    let dir = dir_guard.path().to_path_buf();
    let rt = runtime();
    let segment = dir.join(segment_name(0));
    let log = open_appended(&dir, &rt, 3, false);
    // While the log is open the file is longer than its records, by zeros: appends
    // write into it without growing the file.
    let bytes = std::fs::read(&segment).expect("read");
    let len = records_len(&dir, 0);
    assert!(
        bytes.len() as u64 > len,
        "no zeroed space after the records"
    );
    assert!(bytes[len as usize..].iter().all(|&b| b == 0));
    log.close();
    assert_eq!(std::fs::metadata(&segment).expect("segment").len(), len);
}

#[test]
fn zeroed_space_left_by_a_crash_is_free_space_not_a_torn_tail() {
    let dir_guard = temp_dir("free");
    let dir = dir_guard.path().to_path_buf();
    let rt = runtime();
    let segment = dir.join(segment_name(0));
    open_appended(&dir, &rt, 4, true).close();
    // What a killed node leaves: its records, then the zeros written ahead of them.
    let len = records_len(&dir, 0);
    let zeroed = len + 10_000;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .expect("open")
        .set_len(zeroed)
        .expect("extend");
    // `datamesh repair` sees no damage in it either.
    let report = repair::inspect(&dir).expect("inspect");
    assert_eq!((report.damage, report.kept, report.cut_bytes), (None, 4, 0));
    let (log, recovery) = Log::open(LogConfig::new(&dir)).expect("reopen");
    assert_eq!((recovery.records, recovery.truncated_bytes), (4, 0));
    assert_eq!(std::fs::metadata(&segment).expect("segment").len(), zeroed);
    // The writer goes on in that space, and everything reads back after a reopen.
    let next = rt
        .block_on(log.append(vec![event("s", "id4", 4)], vec![]))
        .expect("append");
    assert_eq!(next.positions, vec![4]);
    log.close();
    let (log, recovery) = Log::open(LogConfig::new(&dir)).expect("reopen");
    assert_eq!((recovery.records, recovery.truncated_bytes), (5, 0));
    let payloads: Vec<Vec<u8>> = log
        .read(0, 10)
        .expect("read")
        .into_iter()
        .map(|r| r.payload)
        .collect();
    assert_eq!(payloads.len(), 5);
    assert_eq!(payloads[4], b"{\"n\":4}");
    // An id written before the crash is still known.
    let retry = rt
        .block_on(log.append(vec![event("s", "id1", 1)], vec![]))
        .expect("retry");
    assert!(retry.deduplicated);
    log.close();
}

#[test]
fn a_group_torn_inside_zeroed_space_is_cut_with_the_zeros() {
    let dir_guard = temp_dir("torn-zeroed");
    let dir = dir_guard.path().to_path_buf();
    let rt = runtime();
    let segment = dir.join(segment_name(0));
    open_appended(&dir, &rt, 3, false).close();
    // The crash tore the last write: half of its frame, then the zeros after it.
    let records = scanned(&dir, 0);
    let (len, last) = (records.len, records.offsets[2]);
    let mut bytes = std::fs::read(&segment).expect("read");
    let torn = last + (len - last) / 2;
    bytes.truncate(torn as usize);
    bytes.resize(torn as usize + 5000, 0);
    std::fs::write(&segment, &bytes).expect("write");
    let (log, recovery) = Log::open(LogConfig::new(&dir)).expect("reopen");
    assert_eq!(recovery.records, 2);
    assert_eq!(recovery.truncated_bytes, 5000 + torn - last);
    assert_eq!(std::fs::metadata(&segment).expect("segment").len(), last);
    log.close();
}

#[test]
fn segments_roll_and_reads_span_them() {
    let dir_guard = temp_dir("roll");
    let dir = dir_guard.path().to_path_buf();
    let rt = runtime();
    let config = LogConfig {
        dir: dir.clone(),
        segment_bytes: 512,
    };
    {
        let (log, _) = Log::open(config.clone()).expect("open");
        for n in 0..40 {
            rt.block_on(log.append(vec![event("s", &format!("id{n}"), n)], vec![]))
                .expect("append");
        }
        let all = log.read(0, 100).expect("read");
        assert_eq!(all.len(), 40);
        assert!(all.iter().enumerate().all(|(i, r)| r.position == i as u64));
        // A sealed segment is cut to its records (no zeroed space) when it rolls.
        let mut sealed = files(&dir, "seg");
        sealed.pop();
        for name in sealed {
            let first: u64 = name.trim_end_matches(".seg").parse().expect("segment name");
            let len = std::fs::metadata(dir.join(&name)).expect("segment").len();
            assert_eq!(len, records_len(&dir, first), "{name}");
        }
        log.close();
    }
    let segments = files(&dir, "seg").len();
    assert!(segments > 3, "expected several segments, found {segments}");
    let (log, recovery) = Log::open(config).expect("reopen");
    assert_eq!(recovery.records, 40);
    assert_eq!(log.read(37, 10).expect("read").len(), 3);
    assert_eq!(log.stream_version("s"), Some(39));
    log.close();
}

#[test]
fn corruption_before_the_last_segment_refuses_to_open() {
    let dir_guard = temp_dir("corrupt");
    let dir = dir_guard.path().to_path_buf();
    let rt = runtime();
    let config = LogConfig {
        dir: dir.clone(),
        segment_bytes: 256,
    };
    {
        let (log, _) = Log::open(config.clone()).expect("open");
        for n in 0..20 {
            rt.block_on(log.append(vec![event("s", "", n)], vec![]))
                .expect("append");
        }
        log.close();
    }
    let first = dir.join(segment_name(0));
    let mut bytes = std::fs::read(&first).expect("read");
    bytes[format::SEGMENT_HEADER + 20] ^= 0xFF;
    std::fs::write(&first, &bytes).expect("write");
    assert!(matches!(Log::open(config), Err(LogError::Corrupt { .. })));
}

#[test]
fn concurrent_appends_group_commit_and_keep_versions_exact() {
    let dir_guard = temp_dir("concurrent");
    let dir = dir_guard.path().to_path_buf();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let config = LogConfig {
        dir: dir.clone(),
        segment_bytes: 16 << 10,
    };
    let (log, _) = Log::open(config.clone()).expect("open");
    let acked = rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..8u32 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let stream = format!("own-{w}");
                let mut acked = Vec::new();
                for i in 0..150u32 {
                    let expect = if i == 0 {
                        Expected::NoStream
                    } else {
                        Expected::Exact(u64::from(i) - 1)
                    };
                    let batch = vec![
                        event(&stream, &format!("{w}-{i}"), i),
                        event("shared", "", i),
                    ];
                    let appended = log
                        .append(batch, vec![(stream.clone(), expect)])
                        .await
                        .expect("no conflict on an own stream");
                    acked.extend(appended.positions);
                }
                acked
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("task"));
        }
        all
    });
    let mut sorted = acked.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..2400).collect::<Vec<u64>>(),
        "every position acknowledged exactly once"
    );
    assert_eq!(log.head(), 2400);
    for w in 0..8 {
        let records = log
            .read_stream(&format!("own-{w}"), 0, 1000)
            .expect("stream");
        assert_eq!(records.len(), 150);
        assert!(
            records
                .iter()
                .enumerate()
                .all(|(i, r)| r.stream_version == i as u64)
        );
    }
    let shared = log.read_stream("shared", 0, 5000).expect("shared");
    assert!(
        shared
            .iter()
            .enumerate()
            .all(|(i, r)| r.stream_version == i as u64)
    );
    log.close();
    // Everything acknowledged survives a reopen, across the rolled segments.
    let (log, recovery) = Log::open(config).expect("reopen");
    assert_eq!(recovery.records, 2400);
    assert!(recovery.segments > 2);
    assert_eq!(log.read(0, 3000).expect("read").len(), 2400);
    log.close();
}

/// Unmounts a test file system when the test ends, however it ends.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_failed_write_poisons_the_log_and_a_restart_recovers() {
    let dir_guard = temp_dir("enospc");
    let dir = dir_guard.path().to_path_buf();
    std::fs::create_dir_all(&dir).expect("dir");
    // A 64 KiB file system fills up after a few appends: a real write error.
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: mounting a small tmpfs needs root (CI runs as root)");
        return;
    }
    let _unmount = Unmount(dir.clone());
    let rt = runtime();
    let config = LogConfig {
        dir: dir.clone(),
        segment_bytes: 1 << 30,
    };
    let (log, _) = Log::open(config.clone()).expect("open");
    let big = |n: u32| NewEvent {
        event_type: "Blob".into(),
        payload: vec![b'x'; 6000],
        stream: "s".into(),
        id: format!("b{n}"),
        origin: String::new(),
        time: None,
    };
    let mut acknowledged = 0;
    let mut failure = None;
    for n in 0..100 {
        match rt.block_on(log.append(vec![big(n)], vec![])) {
            Ok(a) => acknowledged = a.head,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    assert!(
        matches!(failure, Some(LogError::Poisoned(_))),
        "expected the full disk to poison the log, got {failure:?}"
    );
    assert!(acknowledged > 0, "some appends fit before the disk filled");
    assert!(log.poisoned().is_some());
    // Every later append is refused, even a tiny one, and nothing moves.
    let later = rt.block_on(log.append(vec![event("s", "", 1)], vec![]));
    assert!(matches!(later, Err(LogError::Poisoned(_))));
    assert_eq!(log.head(), acknowledged);
    log.close();
    // A restart cuts whatever part of the failed write reached the disk.
    let (log, recovery) = Log::open(config).expect("reopen after the failure");
    assert_eq!(recovery.records, acknowledged);
    assert_eq!(log.head(), acknowledged);
    let records = log.read(0, 1000).expect("read");
    assert!(
        records
            .iter()
            .enumerate()
            .all(|(i, r)| r.position == i as u64 && r.payload.len() == 6000)
    );
    // Closed (its threads joined, its files shut) before the file system is unmounted.
    log.close();
}

/// Names of the files in `dir` with this extension, sorted.
fn files(dir: &Path, extension: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(&format!(".{extension}")))
        .collect();
    names.sort();
    names
}

fn copy_dir(from: &Path, to: &Path, with_idx: bool) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).expect("dir");
    for name in
        files(from, "seg")
            .into_iter()
            .chain(if with_idx { files(from, "idx") } else { vec![] })
    {
        std::fs::copy(from.join(&name), to.join(&name)).expect("copy");
    }
}

fn small_segments(dir: &Path) -> LogConfig {
    LogConfig {
        dir: dir.to_owned(),
        segment_bytes: 600,
    }
}

/// Appends a mix of streams, stream-less events and ids over two sessions (the second
/// one goes on in the active segment the first left), rolling many small segments.
/// Returns the requests that carried ids.
fn build_mixed(rt: &tokio::runtime::Runtime, config: &LogConfig, tag: &str) -> Vec<Vec<NewEvent>> {
    let mut with_ids = Vec::new();
    for session in 0..2u32 {
        let (log, _) = Log::open(config.clone()).expect("open");
        for n in session * 60..(session + 1) * 60 {
            let batch: Vec<NewEvent> = (0..=n % 3)
                .map(|k| {
                    let stream = if (n + k) % 5 == 4 {
                        String::new()
                    } else {
                        format!("{tag}-{}", (n + k) % 7)
                    };
                    let id = if n % 3 == 0 {
                        format!("{tag}-id{n}-{k}")
                    } else {
                        String::new()
                    };
                    event(&stream, &id, n * 10 + k)
                })
                .collect();
            rt.block_on(log.append(batch.clone(), vec![]))
                .expect("append");
            if n % 3 == 0 {
                with_ids.push(batch);
            }
        }
        log.close();
    }
    with_ids
}

/// Everything a client can observe of a log without changing it.
#[derive(Debug, PartialEq)]
struct Observed {
    head: u64,
    records: Vec<Record>,
    streams: Vec<(Option<u64>, Vec<Record>)>,
    retries: Vec<Result<Appended, LogError>>,
}

fn observe(
    rt: &tokio::runtime::Runtime,
    log: &Log,
    tag: &str,
    with_ids: &[Vec<NewEvent>],
) -> Observed {
    let head = log.head();
    let records = log.read(0, 100_000).expect("read");
    let streams = (0..8)
        .map(|k| {
            let stream = format!("{tag}-{k}");
            let records = log.read_stream(&stream, 0, 10_000).expect("stream");
            (log.stream_version(&stream), records)
        })
        .collect();
    // Retried requests dedupe (or, for ids not in the log, append).
    let mut retries: Vec<Result<Appended, LogError>> = with_ids
        .iter()
        .map(|batch| rt.block_on(log.append(batch.clone(), vec![])))
        .collect();
    // A partial duplicate of an id from the first segment.
    if let Some(first) = with_ids.first() {
        let mut partial = first.clone();
        partial.push(event("", "never-seen", 0));
        retries.push(rt.block_on(log.append(partial, vec![])));
    }
    Observed {
        head,
        records,
        streams,
        retries,
    }
}

/// Opens a copy of `dir` without any idx file: the full verifying scan.
fn observe_scanned(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    name: &str,
    tag: &str,
    with_ids: &[Vec<NewEvent>],
) -> Observed {
    let copy_guard = temp_dir(name);
    let copy = copy_guard.path().to_path_buf();
    copy_dir(dir, &copy, false);
    let (log, recovery) = Log::open(small_segments(&copy)).expect("scanned open");
    assert_eq!(recovery.indexed_segments, 0);
    assert_eq!(recovery.scanned_segments, recovery.segments);
    let observed = observe(rt, &log, tag, with_ids);
    log.close();
    observed
}

#[test]
fn sealed_segments_get_an_idx_that_reopen_uses() {
    // Tiny segments (about one event per stream each: streams copy their positions) and
    // larger ones (several: streams keep chunks of the idx bytes).
    for segment_bytes in [600, 4096] {
        an_idx_is_written_and_used(segment_bytes);
    }
}

fn an_idx_is_written_and_used(segment_bytes: u64) {
    let dir_guard = temp_dir(&format!("idx-used-{segment_bytes}"));
    let dir = dir_guard.path().to_path_buf();
    let rt = runtime();
    let config = LogConfig {
        dir: dir.clone(),
        segment_bytes,
    };
    let with_ids = build_mixed(&rt, &config, "u");
    let segments = files(&dir, "seg");
    assert!(
        segments.len() > 3,
        "expected several segments, found {segments:?}"
    );
    // Every sealed segment has its idx, the active one has none.
    let expected: Vec<String> = segments[..segments.len() - 1]
        .iter()
        .map(|s| s.replace(".seg", ".idx"))
        .collect();
    assert_eq!(files(&dir, "idx"), expected);
    assert!(files(&dir, "tmp").is_empty());

    let (log, recovery) = Log::open(config.clone()).expect("reopen");
    assert_eq!(recovery.segments, segments.len());
    assert_eq!(recovery.indexed_segments, segments.len() - 1);
    assert_eq!(recovery.scanned_segments, 1);
    assert_eq!(recovery.records, 240);
    let observed = observe(&rt, &log, "u", &with_ids);
    assert!(
        observed
            .retries
            .iter()
            .take(with_ids.len())
            .all(|r| r.as_ref().is_ok_and(|a| a.deduplicated)),
        "retries of ids in sealed segments dedupe after a restart"
    );
    assert!(matches!(
        observed.retries.last(),
        Some(Err(LogError::PartialDuplicate { position: 0, .. }))
    ));
    assert_eq!(
        observed,
        observe_scanned(
            &rt,
            &dir,
            &format!("idx-used-scan-{segment_bytes}"),
            "u",
            &with_ids
        )
    );
    // Stream reads from any version, of any length, across the chunks of sealed
    // segments and the active one's positions.
    for k in 0..7 {
        let stream = format!("u-{k}");
        let all = log.read_stream(&stream, 0, 10_000).expect("stream");
        for from in [0, 1, 5, 17, all.len() - 1, all.len(), all.len() + 3] {
            for max in [0, 1, 2, 9, 40, 10_000] {
                let some = log.read_stream(&stream, from as u64, max).expect("stream");
                let expected: Vec<Record> = all.iter().skip(from).take(max).cloned().collect();
                assert_eq!(some, expected, "{stream} from {from} max {max}");
            }
        }
    }

    // The log goes on from an indexed open: versions continue, new rolls get an idx.
    for n in 0..40 {
        let appended = rt
            .block_on(log.append(
                vec![event("u-3", "", n)],
                vec![(
                    "u-3".into(),
                    Expected::Exact(observed.streams[3].0.expect("u-3") + u64::from(n)),
                )],
            ))
            .expect("append");
        assert_eq!(appended.positions, vec![240 + u64::from(n)]);
    }
    log.close();
    let (log, recovery) = Log::open(config).expect("reopen");
    assert_eq!(recovery.indexed_segments, recovery.segments - 1);
    assert_eq!(recovery.records, 280);
    let tail = log.read_stream("u-3", 0, 1000).expect("stream");
    assert!(
        tail.iter()
            .enumerate()
            .all(|(i, r)| r.stream_version == i as u64)
    );
    assert_eq!(files(&dir, "idx").len(), recovery.segments - 1);
    log.close();
}

#[test]
fn a_bad_idx_is_never_trusted() {
    let rt = runtime();
    let base_guard = temp_dir("idx-bad-base");
    let base = base_guard.path().to_path_buf();
    let with_ids = build_mixed(&rt, &small_segments(&base), "b");
    let reference = observe_scanned(&rt, &base, "idx-bad-ref", "b", &with_ids);
    let idx = files(&base, "idx");
    let victim = idx[idx.len() / 2].clone();
    let other = idx[1].clone();
    type Damage = Box<dyn Fn(&Path)>;
    let damages: Vec<(&str, Damage)> = vec![
        (
            "flipped",
            Box::new(|path: &Path| {
                let mut bytes = std::fs::read(path).expect("idx");
                let at = bytes.len() / 2;
                bytes[at] ^= 0x10;
                std::fs::write(path, bytes).expect("write");
            }),
        ),
        (
            "truncated",
            Box::new(|path: &Path| {
                let bytes = std::fs::read(path).expect("idx");
                std::fs::write(path, &bytes[..bytes.len() - 9]).expect("write");
            }),
        ),
        (
            "deleted",
            Box::new(|path: &Path| std::fs::remove_file(path).expect("remove")),
        ),
        (
            "another segment's",
            Box::new(move |path: &Path| {
                let dir = path.parent().expect("dir");
                std::fs::copy(dir.join(&other), path).expect("copy");
            }),
        ),
        (
            "empty",
            Box::new(|path: &Path| std::fs::write(path, b"").expect("write")),
        ),
    ];
    for (n, (what, damage)) in damages.iter().enumerate() {
        let dir_guard = temp_dir(&format!("idx-bad-{n}"));
        let dir = dir_guard.path().to_path_buf();
        copy_dir(&base, &dir, true);
        damage(&dir.join(&victim));
        let (log, recovery) = Log::open(small_segments(&dir)).expect("open");
        assert_eq!(
            (recovery.indexed_segments, recovery.scanned_segments),
            (recovery.segments - 2, 2),
            "a {what} idx must not be used"
        );
        assert_eq!(observe(&rt, &log, "b", &with_ids), reference, "{what} idx");
        log.close();
        // The scan rewrote the idx.
        let (log, recovery) = Log::open(small_segments(&dir)).expect("open");
        assert_eq!(recovery.indexed_segments, recovery.segments - 1, "{what}");
        assert_eq!(
            observe(&rt, &log, "b", &with_ids),
            reference,
            "{what} idx rewritten"
        );
        log.close();
    }
}

#[test]
fn an_idx_whose_segment_changed_is_never_trusted() {
    let rt = runtime();
    // Two logs with the same shape: stream names and ids of the same lengths, so the
    // records have the same sizes and the segments the same lengths and offsets.
    let one_guard = temp_dir("idx-changed-one");
    let one = one_guard.path().to_path_buf();
    let two_guard = temp_dir("idx-changed-two");
    let two = two_guard.path().to_path_buf();
    let with_ids = build_mixed(&rt, &small_segments(&one), "p");
    build_mixed(&rt, &small_segments(&two), "q");
    let segments = files(&one, "seg");
    assert_eq!(segments, files(&two, "seg"));
    let victim = segments[segments.len() / 2].clone();
    assert_eq!(
        std::fs::metadata(one.join(&victim)).expect("seg").len(),
        std::fs::metadata(two.join(&victim)).expect("seg").len(),
    );
    // Replace the records of one sealed segment of `one` by those of the same-sized
    // segment of `two` (the header stays `one`'s: a segment of another log is refused
    // outright, see `damage_tests`).
    let header = std::fs::read(one.join(&victim)).expect("seg")[..format::SEGMENT_HEADER].to_vec();
    let mut theirs = std::fs::read(two.join(&victim)).expect("seg");
    theirs[..format::SEGMENT_HEADER].copy_from_slice(&header);
    std::fs::write(one.join(&victim), &theirs).expect("replace");
    let reference = observe_scanned(&rt, &one, "idx-changed-ref", "p", &with_ids);
    let copy_guard = temp_dir("idx-changed-copy");
    let copy = copy_guard.path().to_path_buf();
    copy_dir(&one, &copy, true);
    let (log, recovery) = Log::open(small_segments(&copy)).expect("open");
    assert_eq!(
        recovery.scanned_segments, 2,
        "the replaced segment is scanned"
    );
    assert_eq!(observe(&rt, &log, "p", &with_ids), reference);
    log.close();

    // A sealed segment that grew by a valid record of the next position (which a scan
    // accepts) is scanned, not trusted: the next segment then starts one position early.
    let dir_guard = temp_dir("idx-changed-grown");
    let dir = dir_guard.path().to_path_buf();
    let config = small_segments(&dir);
    build_mixed(&rt, &config, "g");
    let names = files(&dir, "seg");
    let first = names[0].clone();
    let next: u64 = names[1]
        .trim_end_matches(".seg")
        .parse()
        .expect("segment name");
    let mut bytes = std::fs::read(dir.join(&first)).expect("seg");
    let mut frame = Vec::new();
    format::encode_frame(
        &Record {
            position: next,
            time: 0,
            stream_version: 0,
            event_type: "X".into(),
            stream: String::new(),
            id: String::new(),
            payload: b"{}".to_vec(),
            origin: String::new(),
        },
        &mut frame,
    );
    bytes.extend_from_slice(&frame);
    std::fs::write(dir.join(&first), &bytes).expect("grow");
    match Log::open(config) {
        Err(LogError::Corrupt {
            segment, offset: 0, ..
        }) => assert_eq!(segment, names[1]),
        other => panic!("expected the next segment to be refused, got {other:?}"),
    }
}

#[test]
fn damage_inside_an_indexed_segment_surfaces_on_read() {
    let dir_guard = temp_dir("idx-damage");
    let dir = dir_guard.path().to_path_buf();
    let rt = runtime();
    // Segments of dozens of records, so the spot check reads only a few of them.
    let config = LogConfig {
        dir: dir.clone(),
        segment_bytes: 4096,
    };
    build_mixed(&rt, &config, "d");
    let first = files(&dir, "seg").remove(0);
    let (log, _) = Log::open(config.clone()).expect("open");
    let records = log.read(0, 100).expect("read");
    log.close();
    // Flip a payload byte of the second record (not one the spot check reads back).
    let mut frame = Vec::new();
    format::encode_frame(&records[0], &mut frame);
    let at = format::SEGMENT_HEADER + frame.len() + 40;
    let mut bytes = std::fs::read(dir.join(&first)).expect("seg");
    bytes[at] ^= 0x01;
    std::fs::write(dir.join(&first), &bytes).expect("write");
    let (log, recovery) = Log::open(config.clone()).expect("open from the idx");
    assert_eq!(recovery.indexed_segments, recovery.segments - 1);
    assert!(log.read(0, 1).is_ok());
    assert!(matches!(log.read(0, 2), Err(LogError::Corrupt { .. })));
    log.close();
    // Without the idx the scan refuses the damaged sealed segment, as before.
    std::fs::remove_file(dir.join(first.replace(".seg", ".idx"))).expect("remove");
    let reopened = Log::open(config);
    assert!(
        matches!(reopened, Err(LogError::Corrupt { .. })),
        "{:?}",
        reopened.map(|(_, recovery)| recovery)
    );
}

#[test]
fn a_chunked_scan_finds_what_a_whole_scan_finds() {
    let dir_guard = temp_dir("chunked");
    let dir = dir_guard.path().to_path_buf();
    let rt = runtime();
    let config = LogConfig {
        dir: dir.clone(),
        segment_bytes: 1 << 20,
    };
    build_mixed(&rt, &config, "c");
    let path = dir.join(segment_name(0));
    let mut bytes = std::fs::read(&path).expect("segment");
    // A torn last frame: its header and half its body.
    let mut frame = Vec::new();
    format::encode_frame(
        &Record {
            position: 240,
            time: 1,
            stream_version: 0,
            event_type: "T".into(),
            stream: "c-1".into(),
            id: String::new(),
            payload: vec![b'x'; 300],
            origin: String::new(),
        },
        &mut frame,
    );
    bytes.extend_from_slice(&frame[..frame.len() / 2]);
    std::fs::write(&path, &bytes).expect("write");
    let file = File::open(&path).expect("open");
    let whole = index::scan_chunked(0, &file, bytes.len() + 1).expect("scan");
    assert_eq!(whole.segment.offsets.len(), 240);
    assert!(whole.stopped.is_some());
    for chunk in [1, 7, 8, 9, 50, 333, 4096] {
        let file = File::open(&path).expect("open");
        let scan = index::scan_chunked(0, &file, chunk).expect("scan");
        assert_eq!(scan.segment.offsets, whole.segment.offsets, "chunk {chunk}");
        assert_eq!(scan.segment.streams, whole.segment.streams, "chunk {chunk}");
        assert_eq!(scan.segment.ids, whole.segment.ids, "chunk {chunk}");
        assert_eq!(
            (
                scan.segment.len,
                scan.segment.max_time,
                scan.segment.last_crc
            ),
            (
                whole.segment.len,
                whole.segment.max_time,
                whole.segment.last_crc
            ),
        );
        assert_eq!(
            (scan.stopped.clone(), scan.file_len),
            (whole.stopped.clone(), whole.file_len)
        );
    }
}

/// Streams are numbered internally, by the writer as it first writes them and by
/// recovery on open; whatever the numbering, every stream reads back exactly its own
/// events with dense versions, through concurrent groups that each bring new streams,
/// segment rolls, restarts (idx files loaded) and recovery by scan (idx files deleted).
#[test]
fn many_new_streams_keep_their_own_events_across_groups_and_restarts() {
    let dir_guard = temp_dir("stream-ids");
    let dir = dir_guard.path().to_path_buf();
    let config = LogConfig {
        dir: dir.clone(),
        segment_bytes: 4 << 10,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // Which stream each position went to, by the appends' own acknowledgements.
    let mut expected: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for session in 0..3u32 {
        let (log, _) = Log::open(config.clone()).expect("open");
        let acked = rt.block_on(async {
            let mut tasks = Vec::new();
            for w in 0..4u32 {
                let log = log.clone();
                tasks.push(tokio::spawn(async move {
                    let mut acked = Vec::new();
                    for i in 0..40u32 {
                        // Old streams of earlier sessions and new ones in every request.
                        let streams = [
                            format!("s{}-{w}-{i}", session),
                            format!("old-{}", (i + w) % 9),
                            format!("s{}-{w}-{i}", session.saturating_sub(1)),
                        ];
                        let batch: Vec<NewEvent> =
                            streams.iter().map(|s| event(s, "", i)).collect();
                        let appended = log.append(batch, vec![]).await.expect("append");
                        acked.extend(streams.into_iter().zip(appended.positions));
                    }
                    acked
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.expect("task"));
            }
            all
        });
        for (stream, position) in acked {
            expected.entry(stream).or_default().push(position);
        }
        for positions in expected.values_mut() {
            positions.sort_unstable();
        }
        let check = |log: &Log, when: &str| {
            for (stream, positions) in &expected {
                let records = log.read_stream(stream, 0, 10_000).expect("stream");
                let got: Vec<(u64, u64)> = records
                    .iter()
                    .map(|r| (r.position, r.stream_version))
                    .collect();
                let want: Vec<(u64, u64)> = positions.iter().copied().zip(0..).collect();
                assert_eq!(got, want, "stream {stream} {when} in session {session}");
                assert!(records.iter().all(|r| r.stream == *stream));
                assert_eq!(
                    log.stream_version(stream),
                    Some(positions.len() as u64 - 1),
                    "{stream} {when}"
                );
            }
        };
        check(&log, "live");
        // The next version of every stream is exact, through the writer's numbering.
        let stream = format!("old-{session}");
        let version = expected[&stream].len() as u64 - 1;
        let stale = rt.block_on(log.append(
            vec![event(&stream, "", 0)],
            vec![(stream.clone(), Expected::Exact(version + 1))],
        ));
        assert!(
            matches!(stale, Err(LogError::VersionConflict { actual: Some(v), .. }) if v == version)
        );
        log.close();
        if session == 1 {
            for entry in std::fs::read_dir(&dir).expect("dir").flatten() {
                if entry.path().extension().is_some_and(|e| e == "idx") {
                    std::fs::remove_file(entry.path()).expect("remove idx");
                }
            }
        }
        let (log, recovery) = Log::open(config.clone()).expect("reopen");
        assert!(recovery.segments > 3, "the test rolls segments");
        check(&log, "after a restart");
        log.close();
    }
}
