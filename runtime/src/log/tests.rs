//! Log unit tests: appends, reads, versions, idempotency, recovery, rolling.

use super::*;

fn event(stream: &str, id: &str, n: u32) -> NewEvent {
    NewEvent {
        event_type: "Deposited".to_owned(),
        payload: format!("{{\"n\":{n}}}").into_bytes(),
        stream: stream.to_owned(),
        id: id.to_owned(),
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("datamesh-log-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn appends_are_dense_ordered_and_readable() {
    let dir = temp_dir("dense");
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
}

#[test]
fn expected_versions_fail_the_whole_request() {
    let dir = temp_dir("versions");
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
fn appends_are_idempotent_by_id_across_restarts() {
    let dir = temp_dir("ids");
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
}

#[test]
fn a_torn_tail_is_cut_on_open() {
    let dir = temp_dir("torn");
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
}

#[test]
fn segments_roll_and_reads_span_them() {
    let dir = temp_dir("roll");
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
        log.close();
    }
    let segments = std::fs::read_dir(&dir).expect("dir").count();
    assert!(segments > 3, "expected several segments, found {segments}");
    let (log, recovery) = Log::open(config).expect("reopen");
    assert_eq!(recovery.records, 40);
    assert_eq!(log.read(37, 10).expect("read").len(), 3);
    assert_eq!(log.stream_version("s"), Some(39));
}

#[test]
fn corruption_before_the_last_segment_refuses_to_open() {
    let dir = temp_dir("corrupt");
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
    bytes[20] ^= 0xFF;
    std::fs::write(&first, &bytes).expect("write");
    assert!(matches!(Log::open(config), Err(LogError::Corrupt { .. })));
}

#[test]
fn concurrent_appends_group_commit_and_keep_versions_exact() {
    let dir = temp_dir("concurrent");
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
    let dir = temp_dir("enospc");
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
}
