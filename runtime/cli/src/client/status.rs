//! `datamesh status` for people: the node, its projections and its links as aligned
//! tables, with progress bars and an ETA for versions that are catching up when the
//! view is redrawn (`--watch`). `--json` keeps the machine-readable form.
//!
//! Invariant: the table is a pure function of a `StatusResponse` (and the time), so
//! it is tested without a node.

use datamesh_runtime::api::pb;

/// Aligned columns: the header and rows, each cell padded to its column's width
/// (the last column unpadded).
fn columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        let last = cells.len().saturating_sub(1);
        for (i, cell) in cells.into_iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths[i] - cell.chars().count() + 2;
                out.push_str(&" ".repeat(pad));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate per second, short.
fn rate(per_second: f64) -> String {
    if per_second >= 10_000.0 {
        format!("{:.0}k/s", per_second / 1000.0)
    } else if per_second >= 1.0 {
        format!("{per_second:.0}/s")
    } else if per_second > 0.0 {
        format!("{per_second:.1}/s")
    } else {
        "-".to_owned()
    }
}

/// A duration in seconds, short ("3s", "4m10s", "2h05m").
fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// `[#####.....]  50%  ETA 12s` for a projection `lag` behind a head of `head`,
/// folding `per_second`.
fn progress(position: u64, head: u64, per_second: f64) -> String {
    const WIDTH: usize = 20;
    let fraction = if head == 0 {
        1.0
    } else {
        (position as f64 / head as f64).clamp(0.0, 1.0)
    };
    let filled = (fraction * WIDTH as f64).floor() as usize;
    let eta = if per_second > 0.0 {
        format!(
            "ETA {}",
            duration(head.saturating_sub(position) as f64 / per_second)
        )
    } else {
        "ETA ?".to_owned()
    };
    format!(
        "[{}{}] {:>3.0}%  {eta}",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled),
        fraction * 100.0
    )
}

/// Cuts `text` to `max` characters, with an ellipsis.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The status as tables. `now_micros` is the time (for the age of link progress);
/// `bars` adds a progress column for versions catching up.
pub fn table(r: &pb::StatusResponse, now_micros: i64, bars: bool) -> String {
    let on = |b: bool| if b { "on" } else { "off" };
    let mut out = format!(
        "node {}  head {}  appends {}  engine {}  tls {}  auth {}{}",
        r.name,
        thousands(r.head),
        rate(r.append_rate),
        r.engine,
        on(r.tls),
        on(r.auth),
        if r.strict { "  strict" } else { "" }
    );
    if r.insecure {
        out.push_str("\nINSECURE: a network address without TLS or tokens (--insecure)");
    }
    if !r.log_error.is_empty() {
        out.push_str(&format!("\nthe log refuses writes: {}", r.log_error));
    }
    for damage in &r.log_damage {
        out.push_str(&format!("\nlog damage: {damage}"));
    }
    out.push('\n');
    if r.projections.is_empty() {
        out.push_str("\nno projections (deploy a program: datamesh deploy FILE.dmp)\n");
    } else {
        let mut header = vec!["PROJECTION", "ACTIVE", "POSITION", "LAG", "RATE", "STATE"];
        if bars {
            header.push("PROGRESS");
        }
        header.push("FAULT");
        let rows: Vec<Vec<String>> = r
            .projections
            .iter()
            .map(|p| {
                let mut row = vec![
                    format!("{}@v{}", p.name, p.version),
                    if p.active { "*".into() } else { String::new() },
                    thousands(p.position),
                    thousands(p.lag),
                    rate(p.fold_rate),
                    p.state.clone(),
                ];
                if bars {
                    row.push(if p.state == "catching-up" {
                        progress(p.position, r.head, p.fold_rate)
                    } else {
                        String::new()
                    });
                }
                row.push(clip(&p.fault, 80));
                row
            })
            .collect();
        out.push('\n');
        out.push_str(&columns(&header, &rows));
        out.push('\n');
    }
    if !r.links.is_empty() {
        let rows: Vec<Vec<String>> = r
            .links
            .iter()
            .map(|l| {
                vec![
                    l.peer.clone(),
                    l.state.clone(),
                    thousands(l.position),
                    thousands(l.peer_head),
                    thousands(l.lag),
                    thousands(l.imported),
                    if l.last_progress == 0 {
                        "-".into()
                    } else {
                        format!(
                            "{} ago",
                            duration((now_micros - l.last_progress) as f64 / 1e6)
                        )
                    },
                    if l.traps > 0 {
                        format!("{} traps", l.traps)
                    } else {
                        String::new()
                    },
                    clip(&l.error, 80),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&columns(
            &[
                "LINK",
                "STATE",
                "POSITION",
                "PEER HEAD",
                "LAG",
                "IMPORTED",
                "PROGRESS",
                "TRAPS",
                "ERROR",
            ],
            &rows,
        ));
        out.push('\n');
    }
    out
}

/// The deployed versions as a table (`datamesh projections`).
pub fn projections_table(list: &[pb::ProjectionInfo]) -> String {
    if list.is_empty() {
        return "no projections (deploy a program: datamesh deploy FILE.dmp)".to_owned();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                format!("v{}", p.version),
                match (p.active, p.promoted) {
                    (true, true) => "* (promoted)".to_owned(),
                    (true, false) => "*".to_owned(),
                    _ => String::new(),
                },
                if p.key.is_empty() {
                    "(one document)".to_owned()
                } else {
                    p.key.join(", ")
                },
                thousands(p.position),
                p.state.clone(),
                clip(&p.fault, 80),
            ]
        })
        .collect();
    columns(
        &[
            "PROJECTION",
            "VERSION",
            "ACTIVE",
            "KEY",
            "POSITION",
            "STATE",
            "FAULT",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> pb::StatusResponse {
        pb::StatusResponse {
            name: "bank".into(),
            head: 1_234_567,
            append_rate: 5120.4,
            engine: "jit".into(),
            tls: true,
            auth: true,
            projections: vec![
                pb::ProjectionStatus {
                    name: "balances".into(),
                    version: 1,
                    active: true,
                    position: 1_234_567,
                    lag: 0,
                    state: "running".into(),
                    fault: String::new(),
                    fold_rate: 5120.0,
                },
                pb::ProjectionStatus {
                    name: "balances".into(),
                    version: 2,
                    active: false,
                    position: 617_283,
                    lag: 617_284,
                    state: "catching-up".into(),
                    fault: String::new(),
                    fold_rate: 100_000.0,
                },
                pb::ProjectionStatus {
                    name: "ratio".into(),
                    version: 1,
                    active: true,
                    position: 1,
                    lag: 1_234_566,
                    state: "faulted".into(),
                    fault: "R0002 division by zero at position 1 (E)".into(),
                    fold_rate: 0.0,
                },
            ],
            links: vec![pb::LinkStatus {
                peer: "payments".into(),
                state: "live".into(),
                position: 42,
                peer_head: 42,
                imported: 40,
                last_progress: 1_000_000,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn the_status_is_aligned_tables_with_progress_while_catching_up() {
        let text = table(&sample(), 4_000_000, true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "node bank  head 1,234,567  appends 5120/s  engine jit  tls on  auth on"
        );
        let header = lines
            .iter()
            .position(|l| l.starts_with("PROJECTION"))
            .expect("header");
        let state_column = lines[header].find("STATE").expect("STATE");
        for row in &lines[header + 1..header + 4] {
            let cell = &row[state_column..];
            assert!(
                ["running", "catching-up", "faulted"]
                    .iter()
                    .any(|s| cell.starts_with(s)),
                "misaligned: {row}"
            );
        }
        let v2 = lines[header + 2];
        assert!(v2.starts_with("balances@v2"), "{v2}");
        assert!(v2.contains("[#########...........]  50%  ETA 6s"), "{v2}");
        assert!(lines[header + 1].contains('*'));
        assert!(lines[header + 3].contains("R0002 division by zero at position 1"));
        let link = lines
            .iter()
            .find(|l| l.starts_with("payments"))
            .expect("link");
        assert!(link.contains("live") && link.contains("3s ago"), "{link}");
        // Without bars, no progress column.
        assert!(!table(&sample(), 4_000_000, false).contains("ETA"));
    }

    #[test]
    fn figures_are_short_and_readable() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(rate(0.0), "-");
        assert_eq!(rate(0.25), "0.2/s");
        assert_eq!(rate(65_432.0), "65k/s");
        assert_eq!(duration(59.4), "59s");
        assert_eq!(duration(250.0), "4m10s");
        assert_eq!(duration(7500.0), "2h05m");
        assert_eq!(progress(0, 0, 0.0), "[####################] 100%  ETA ?");
    }
}
