//! The admin page, served on the metrics listener (`--metrics ADDR`, `/`): the log
//! head and append rate, each projection version with its position, lag, fold rate,
//! state, and while it catches up a progress bar and an ETA, which version is active,
//! faults with their code, message, position and span, the mesh's links, and a
//! document browser (get by key, scan a page).
//!
//! Server-rendered HTML with a few lines of script that refresh the tables from
//! `/status.json` every second; no build step, nothing fetched from the network. It
//! only reads: there is no form that changes anything.

use std::fmt::Write;

use crate::proto as pb;
use crate::proto::data_mesh_server::DataMesh;

/// Escapes text for HTML.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The value of `name` in a query string, percent-decoded.
fn param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| decode(v))
    })
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.push((high * 16 + low) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:20px;margin:0 0 .3em}h2{font-size:16px;margin:1.4em 0 .4em}\
table{border-collapse:collapse}th,td{padding:3px 10px;text-align:left;border-bottom:1px solid #ddd;vertical-align:top}\
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.fault{color:#a00}.state,.progress{white-space:nowrap}.warn{color:#a60;font-weight:bold}progress{width:160px}\
pre{background:#f6f6f6;padding:8px;max-width:60em;overflow:auto}nav a{margin-right:1em}";

fn layout(title: &str, body: &str, script: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>{STYLE}</style></head><body><nav><a href=\"/\">Overview</a>\
         <a href=\"/documents\">Documents</a><a href=\"/metrics\">Metrics</a></nav>{body}\
         <script>{script}</script></body></html>",
        esc(title)
    )
}

/// The fault of a projection: code, message, position, event type and span, from the
/// fault the engine recorded, or the summary `status` gives.
fn fault_html(service: &crate::api::Service, label: &str, summary: &str) -> String {
    let recorded = service
        .engine()
        .with_registry(|r| {
            r.projections
                .iter()
                .find(|p| p.label == label)
                .and_then(|p| p.fault.clone())
        })
        .flatten();
    let Some(fault) = recorded else {
        return esc(summary);
    };
    let span = match fault.span {
        Some([start, end]) => format!(", source bytes {start}..{end}"),
        None => String::new(),
    };
    format!(
        "<b>{}</b> {} <span>at position {} ({}{})</span>",
        esc(&fault.code),
        esc(&fault.message),
        fault.position,
        esc(&fault.event_type),
        span
    )
}

fn eta(lag: u64, rate: f64) -> String {
    if rate <= 0.0 {
        return "ETA ?".to_owned();
    }
    let s = (lag as f64 / rate).round() as u64;
    if s < 60 {
        format!("ETA {s}s")
    } else {
        format!("ETA {}m{:02}s", s / 60, s % 60)
    }
}

fn overview(service: &crate::api::Service) -> String {
    let r = service.snapshot();
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>DataMesh node <span id=\"name\">{}</span></h1>\
         <p>head <b id=\"head\">{}</b> · appends <b id=\"rate\">{:.1}</b>/s · engine {} · TLS {} · tokens {}</p>",
        esc(&r.name),
        r.head,
        r.append_rate,
        esc(&r.engine),
        if r.tls { "on" } else { "off" },
        if r.auth { "on" } else { "off" },
    );
    if r.insecure {
        body.push_str(
            "<p class=\"warn\">INSECURE: serving a network address without TLS or tokens</p>",
        );
    }
    if !r.log_error.is_empty() {
        let _ = write!(
            body,
            "<p class=\"warn\">The log refuses writes: {}</p>",
            esc(&r.log_error)
        );
    }
    for damage in &r.log_damage {
        let _ = write!(body, "<p class=\"warn\">Log damage: {}</p>", esc(damage));
    }
    body.push_str(
        "<h2>Projections</h2><table id=\"projections\"><thead><tr><th>Projection</th><th>Version</th>\
         <th>Active</th><th>Position</th><th>Lag</th><th>Folds/s</th><th>State</th><th>Progress</th>\
         <th>Fault</th></tr></thead><tbody>",
    );
    if r.projections.is_empty() {
        body.push_str("<tr><td colspan=\"9\">No projections: deploy a program (<code>datamesh deploy FILE.dmp</code>).</td></tr>");
    }
    for p in &r.projections {
        let label = format!("{}@v{}", p.name, p.version);
        let progress = if p.state == "catching-up" {
            format!(
                "<progress value=\"{}\" max=\"{}\"></progress> {}",
                p.position,
                r.head.max(1),
                eta(p.lag, p.fold_rate)
            )
        } else {
            String::new()
        };
        let _ = write!(
            body,
            "<tr data-projection=\"{}\"><td><a href=\"/documents?projection={}&amp;version={}\">{}</a></td><td class=\"n\">{}</td>\
             <td>{}</td><td class=\"n position\">{}</td><td class=\"n\">{}</td><td class=\"n\">{:.1}</td>\
             <td class=\"state\">{}</td><td class=\"progress\">{}</td><td class=\"fault\">{}</td></tr>",
            esc(&label),
            esc(&p.name),
            p.version,
            esc(&p.name),
            p.version,
            if p.active { "✓" } else { "" },
            p.position,
            p.lag,
            p.fold_rate,
            esc(&p.state),
            progress,
            if p.fault.is_empty() {
                String::new()
            } else {
                fault_html(service, &label, &p.fault)
            },
        );
    }
    body.push_str("</tbody></table>");
    if !r.links.is_empty() {
        body.push_str(
            "<h2>Mesh links</h2><table id=\"links\"><thead><tr><th>Peer</th><th>State</th><th>Position</th>\
             <th>Peer head</th><th>Lag</th><th>Imported</th><th>Traps</th><th>Error</th></tr></thead><tbody>",
        );
        for l in &r.links {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"fault\">{}</td></tr>",
                esc(&l.peer),
                esc(&l.state),
                l.position,
                l.peer_head,
                l.lag,
                l.imported,
                l.traps,
                esc(&l.error)
            );
        }
        body.push_str("</tbody></table>");
    }
    // Refresh the figures, positions, states and bars every second (a reload shows
    // the rest: faults, new versions).
    let script = "setInterval(async()=>{try{const r=await fetch('/status.json');if(!r.ok)return;\
        const s=await r.json();document.getElementById('head').textContent=s.head;\
        document.getElementById('rate').textContent=(s.append_rate||0).toFixed(1);\
        let reload=false;for(const p of s.projections){\
        const row=document.querySelector('tr[data-projection=\"'+p.projection+'\"]');\
        if(!row){reload=true;continue;}\
        if(row.querySelector('.state').textContent!==p.state)reload=true;\
        row.querySelector('.position').textContent=p.position;\
        const bar=row.querySelector('progress');if(bar){bar.value=p.position;bar.max=Math.max(s.head,1);}}\
        if(reload)location.reload();}catch(e){}},1000);";
    layout(&format!("DataMesh {}", r.name), &body, script)
}

async fn documents(service: &crate::api::Service, query: Option<&str>) -> String {
    let projection = param(query, "projection").unwrap_or_default();
    let key = param(query, "key").unwrap_or_default();
    let page = param(query, "page").unwrap_or_default();
    let version: u32 = param(query, "version")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let names: Vec<String> = service
        .snapshot()
        .projections
        .iter()
        .map(|p| p.name.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut body = String::from(
        "<h1>Documents</h1><form method=\"get\" action=\"/documents\"><label>Projection <select name=\"projection\">",
    );
    for name in &names {
        let _ = write!(
            body,
            "<option{}>{}</option>",
            if *name == projection { " selected" } else { "" },
            esc(name)
        );
    }
    let _ = write!(
        body,
        "</select></label> <label>Key <input name=\"key\" value=\"{}\" placeholder=\"empty: scan\"></label> \
         <button>Show</button></form>",
        esc(&key)
    );
    if projection.is_empty() {
        return layout("DataMesh documents", &body, "");
    }
    if !key.is_empty() {
        let request = tonic::Request::new(pb::GetRequest {
            projection: projection.clone(),
            key: key.clone(),
            version,
            ..Default::default()
        });
        match service.get(request).await {
            Ok(doc) => {
                let pretty = serde_json::from_str::<serde_json::Value>(&doc.get_ref().document)
                    .ok()
                    .and_then(|v| serde_json::to_string_pretty(&v).ok())
                    .unwrap_or_else(|| doc.get_ref().document.clone());
                let _ = write!(
                    body,
                    "<h2>{} / {}</h2><p>at position {}</p><pre id=\"document\">{}</pre>",
                    esc(&projection),
                    esc(&key),
                    doc.get_ref().position,
                    esc(&pretty)
                );
            }
            Err(status) => {
                let _ = write!(
                    body,
                    "<p class=\"fault\" id=\"error\">{}</p>",
                    esc(status.message())
                );
            }
        }
        return layout("DataMesh documents", &body, "");
    }
    let request = tonic::Request::new(pb::ScanRequest {
        projection: projection.clone(),
        version,
        limit: 50,
        page_token: page,
        ..Default::default()
    });
    match service.scan(request).await {
        Ok(scan) => {
            let scan = scan.into_inner();
            let _ = write!(
                body,
                "<h2>{}</h2><table id=\"scan\"><thead><tr><th>Key</th><th>Document</th></tr></thead><tbody>",
                esc(&projection)
            );
            for d in &scan.documents {
                let _ = write!(
                    body,
                    "<tr><td><a href=\"/documents?projection={}&amp;version={}&amp;key={}\">{}</a></td><td><code>{}</code></td></tr>",
                    esc(&encode(&projection)),
                    version,
                    esc(&encode(&d.key)),
                    esc(&d.key),
                    esc(&d.document)
                );
            }
            body.push_str("</tbody></table>");
            if !scan.next_page_token.is_empty() {
                let _ = write!(
                    body,
                    "<p><a id=\"next\" href=\"/documents?projection={}&amp;version={}&amp;page={}\">Next page</a></p>",
                    esc(&encode(&projection)),
                    version,
                    esc(&encode(&scan.next_page_token))
                );
            }
        }
        Err(status) => {
            let _ = write!(
                body,
                "<p class=\"fault\" id=\"error\">{}</p>",
                esc(status.message())
            );
        }
    }
    layout("DataMesh documents", &body, "")
}

/// Percent-encodes a query value.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The page at `path`: its content type and body, or `None` (not found).
pub async fn page(
    service: &crate::api::Service,
    path: &str,
    query: Option<&str>,
) -> Option<(&'static str, String)> {
    const HTML: &str = "text/html; charset=utf-8";
    match path {
        "/" => Some((HTML, overview(service))),
        "/status.json" => Some((
            "application/json",
            status_json(&service.snapshot()).to_string(),
        )),
        "/documents" => Some((HTML, documents(service, query).await)),
        _ => None,
    }
}

/// The status as the JSON `status --json` prints.
pub fn status_json(r: &crate::proto::StatusResponse) -> serde_json::Value {
    let projections: Vec<serde_json::Value> = r
        .projections
        .iter()
        .map(|p| {
            serde_json::json!({
                "projection": format!("{}@v{}", p.name, p.version),
                "active": p.active,
                "position": p.position,
                "lag": p.lag,
                "state": p.state,
                "fold_rate": p.fold_rate,
                "fault": if p.fault.is_empty() { serde_json::Value::Null } else { p.fault.clone().into() },
            })
        })
        .collect();
    serde_json::json!({
        "name": r.name,
        "peers": r.peers.iter().map(|p| serde_json::json!({ "name": p.name, "address": p.address })).collect::<Vec<_>>(),
        "head": r.head,
        "append_rate": r.append_rate,
        "engine": r.engine,
        "strict": r.strict,
        "insecure": r.insecure,
        "auth": r.auth,
        "tls": r.tls,
        "peer_certs": r.peer_certs,
        "log_error": if r.log_error.is_empty() { serde_json::Value::Null } else { r.log_error.clone().into() },
        "log_damage": r.log_damage,
        "log_verified": r.log_verified,
        "projections": projections,
        "links": r.links.iter().map(|l| serde_json::json!({
            "peer": l.peer,
            "state": l.state,
            "position": l.position,
            "peer_head": l.peer_head,
            "lag": l.lag,
            "imported": l.imported,
            "last_progress": if l.last_progress == 0 { serde_json::Value::Null } else { datamesh_stdlib::time::format_rfc3339(l.last_progress).into() },
            "error": if l.error.is_empty() { serde_json::Value::Null } else { l.error.clone().into() },
            "last_trap": if l.last_trap.is_empty() { serde_json::Value::Null } else { l.last_trap.clone().into() },
            "traps": l.traps,
            "peer_identity": l.peer_identity,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_decoded_and_html_escaped() {
        assert_eq!(
            param(Some("projection=a%20b&key=x+y"), "projection").as_deref(),
            Some("a b")
        );
        assert_eq!(
            param(Some("projection=a&key=x+y"), "key").as_deref(),
            Some("x y")
        );
        assert_eq!(param(Some("key=%zz"), "key").as_deref(), Some("%zz"));
        assert_eq!(param(Some("key=50%"), "key").as_deref(), Some("50%"));
        assert_eq!(param(Some("key=%é1"), "key").as_deref(), Some("%é1"));
        assert_eq!(param(None, "key"), None);
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(decode(&encode("[\"a1\",\"é\"]")), "[\"a1\",\"é\"]");
    }
}
