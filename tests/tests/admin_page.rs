//! The admin page and the metrics listener (issue 13), as a person and Prometheus see
//! them: headless Chromium (Debian's `chromium`, which `.ci/run` installs) loads the
//! page and what it shows is checked: the deployed projections, a rebuild's progress
//! moving, a fault with its code, the document browser; `/metrics` has the figures.
//!
//! Without Chromium the page test says so and passes, unless
//! `DATAMESH_REQUIRE_CHROMIUM` is set (as `.ci/run` sets it).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use datamesh_runtime::api::pb;

fn chromium() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("DATAMESH_REQUIRE_CHROMIUM").is_none(),
            "DATAMESH_REQUIRE_CHROMIUM is set but chromium is not installed"
        );
        eprintln!(
            "SKIPPED: chromium is not installed (apt-get install chromium), so the admin page was not tried in a browser"
        );
    }
    found
}

/// The DOM of `url` after its scripts ran, as headless Chromium renders it.
fn render(browser: &str, profile: &std::path::Path, url: &str) -> String {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=1500",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The metrics address a node printed.
fn metrics_url(node: &Node) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = node.stderr.lock().ok().and_then(|lines| {
            lines
                .iter()
                .find_map(|l| l.strip_prefix("datamesh metrics on ").map(str::to_owned))
        });
        if let Some(url) = found {
            return url.trim_end_matches("/metrics").to_owned();
        }
        assert!(Instant::now() < deadline, "no metrics line");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `(position, state)` of the row of `label` in a rendered overview.
fn row(dom: &str, label: &str) -> Option<(u64, String)> {
    let start = dom.find(&format!("data-projection=\"{label}\""))?;
    let row = &dom[start..start + dom[start..].find("</tr>")?];
    let cell = |class: &str| -> Option<String> {
        let at = row.find(&format!("class=\"{class}\""))?;
        let text = &row[at..];
        let open = text.find('>')? + 1;
        let close = text.find("</td>")?;
        Some(text[open..close].to_owned())
    };
    let position = cell("n position")?.parse().ok()?;
    Some((position, cell("state")?))
}

fn http_get(url: &str) -> (u16, String) {
    http_request(url, None)
}

/// GET `url` (plain HTTP/1.1), with an `Authorization` header when given: the status
/// code and the body.
fn http_request(url: &str, authorization: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = std::net::TcpStream::connect(host).expect("connect");
    let auth = authorization.map_or_else(String::new, |a| format!("Authorization: {a}\r\n"));
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("write");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read");
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_shows_projections_rebuild_progress_and_faults() {
    let guard = temp_dir("admin", Engine::Interp);
    let dir = guard.path();
    // The interpreter folds slowly enough for a rebuild to be seen moving.
    let node = Node::start(
        &dir.join("data"),
        Engine::Interp,
        &["--metrics", "127.0.0.1:0"],
    );
    let base = metrics_url(&node);
    let mut client = node.client().await;
    let v1 = "event E { k: string, n: int }
projection sums v1 { key k state { total: int, count: int } on E { total += event.n  count += 1 } }
projection ratio { state { r: int = 0 } on E { r = 100 / event.n } }";
    client
        .deploy(pb::DeployRequest {
            source: v1.into(),
            origin: "sums.dmp".into(),
        })
        .await
        .expect("deploy");
    // 300,000 events (the tenth has n = 0: `ratio` faults there).
    for batch in 0..30 {
        let events = (0..10_000)
            .map(|i| {
                let n = batch * 10_000 + i;
                event(
                    "E",
                    &format!(
                        r#"{{"k":"k{}","n":{}}}"#,
                        n % 1000,
                        if n == 9 { 0 } else { 1 + n % 7 }
                    ),
                    "",
                    "",
                )
            })
            .collect();
        client
            .append(pb::AppendRequest {
                events,
                expected: vec![],
                read_back: Vec::new(),
            })
            .await
            .expect("append");
    }

    // Prometheus' view first (no browser needed).
    let (code, metrics) = http_get(&format!("{base}/metrics"));
    assert_eq!(code, 200);
    for needle in [
        "datamesh_events_appended_total 300000",
        "datamesh_log_head 300000",
        "datamesh_rpc_seconds_count{method=\"Append\",code=\"OK\"} 30",
        "datamesh_projection_faulted{projection=\"ratio\",version=\"1\",active=\"true\"} 1",
        "datamesh_fdatasync_seconds_bucket",
        "# EOF",
    ] {
        assert!(metrics.contains(needle), "no `{needle}` in:\n{metrics}");
    }
    assert_eq!(http_get(&format!("{base}/nothing")).0, 404);

    let Some(browser) = chromium() else {
        return;
    };
    let profile = dir.join("chromium");
    let overview = render(browser, &profile, &format!("{base}/"));
    assert!(
        overview.contains("data-projection=\"sums@v1\""),
        "{overview}"
    );
    assert!(
        overview.contains("data-projection=\"ratio@v1\""),
        "{overview}"
    );
    // The fault, with its code, message, position and span.
    assert!(
        overview.contains("<b>R0002</b> division by zero"),
        "{overview}"
    );
    assert!(
        overview.contains("at position 9 (E, source bytes"),
        "{overview}"
    );

    // A new version rebuilds: its progress moves.
    client
        .deploy(pb::DeployRequest {
            source: v1
                .replace("sums v1", "sums v2")
                .replace("count += 1", "count += 2"),
            origin: "sums-v2.dmp".into(),
        })
        .await
        .expect("deploy v2");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen: Vec<(u64, String)> = Vec::new();
    loop {
        let dom = render(browser, &profile, &format!("{base}/"));
        if let Some(r) = row(&dom, "sums@v2") {
            if r.1 == "catching-up" {
                assert!(
                    dom.contains("<progress value="),
                    "no progress bar while catching up"
                );
                assert!(dom.contains("ETA"), "{dom}");
            }
            seen.push(r);
        }
        let moved = seen.windows(2).any(|w| w[1].0 > w[0].0)
            && seen.iter().any(|(_, state)| state == "catching-up");
        if moved {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rebuild's progress was not seen moving: {seen:?}"
        );
    }

    // The document browser: a scan page and one document.
    let scan = render(
        browser,
        &profile,
        &format!("{base}/documents?projection=sums&version=1"),
    );
    assert!(scan.contains("<table id=\"scan\">"), "{scan}");
    assert!(scan.contains(">k0</a>"), "{scan}");
    assert!(
        scan.contains("id=\"next\""),
        "1000 keys make more than one page: {scan}"
    );
    let doc = render(
        browser,
        &profile,
        &format!("{base}/documents?projection=sums&version=1&key=k1"),
    );
    assert!(doc.contains("<pre id=\"document\">"), "{doc}");
    assert!(doc.contains("\"count\": 300"), "{doc}");
}

fn http_get_with(url: &str, authorization: &str) -> u16 {
    http_request(url, Some(authorization)).0
}

#[test]
fn with_tokens_the_metrics_and_the_page_need_a_reader() {
    use base64::Engine as _;
    let guard = temp_dir("admin-tokens", Engine::Jit);
    let data = guard.path().join("data");
    let token = |role: &str| create_token(&data, role, role);
    let reader = token("reader");
    let writer = token("writer");
    let node = Node::start(&data, Engine::Jit, &["--metrics", "127.0.0.1:0"]);
    let base = metrics_url(&node);
    for path in ["/metrics", "/", "/status.json"] {
        let url = format!("{base}{path}");
        assert_eq!(http_get(&url).0, 401, "{path} without a token");
        assert_eq!(
            http_get_with(&url, &format!("Bearer {reader}")),
            200,
            "{path}"
        );
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("me:{reader}"));
        assert_eq!(
            http_get_with(&url, &format!("Basic {basic}")),
            200,
            "{path} (a browser)"
        );
        assert_eq!(
            http_get_with(&url, &format!("Bearer {writer}")),
            403,
            "{path} as a writer"
        );
    }
}
