//! TLS and peer identity by certificate (issue 15): a node serving TLS with the mesh's
//! CA serves its export stream only to the node a client certificate names; a
//! plaintext client is told to use TLS; a certificate from another CA fails the
//! handshake; development certificates come from `datamesh cert dev`; certificates
//! reload on SIGHUP without dropping the node or its open connections.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use datamesh_runtime::api::pb;
use datamesh_runtime::api::pb::data_mesh_client::DataMeshClient;
use datamesh_runtime::tls::ClientTls;
use tonic::Code;
use tonic::transport::Channel;

/// `datamesh cert dev --out DIR NAME...`.
fn dev_certs(dir: &Path, names: &[&str]) {
    let mut args = vec!["cert", "dev", "--out", dir.to_str().expect("utf-8")];
    args.extend(names);
    let (code, out, err) = cli_at("http://127.0.0.1:1", &args);
    assert_eq!(code, 0, "{out}{err}");
    let made: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    for name in names {
        assert!(made["nodes"][name]["cert"].is_string(), "{out}");
    }
}

/// The serve flags of a node with the certificate `name` of `certs`, verifying
/// clients against that CA.
fn tls_flags(certs: &Path, name: &str) -> Vec<String> {
    vec![
        "--tls-cert".into(),
        certs.join(format!("{name}.pem")).display().to_string(),
        "--tls-key".into(),
        certs.join(format!("{name}.key")).display().to_string(),
        "--tls-ca".into(),
        certs.join("ca.pem").display().to_string(),
    ]
}

fn https(node: &Node) -> String {
    node.url.replacen("http://", "https://", 1)
}

/// A client of `url` trusting the CA of `certs`, presenting the certificate of
/// `name` (if any).
async fn client(
    url: &str,
    certs: &Path,
    name: Option<&str>,
) -> Result<DataMeshClient<Channel>, String> {
    let tls = ClientTls {
        ca: Some(certs.join("ca.pem")),
        cert: name.map(|n| certs.join(format!("{n}.pem"))),
        key: name.map(|n| certs.join(format!("{n}.key"))),
    };
    datamesh_runtime::connect::channel(url, &tls)
        .await
        .map(DataMeshClient::new)
}

fn export_request(peer: &str) -> pb::ExportRequest {
    pb::ExportRequest {
        peer: peer.into(),
        from_position: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_over_mutual_tls_serves_each_peer_only_what_its_certificate_names() {
    let guard = temp_dir("tls-mesh", Engine::Jit);
    let dir = guard.path();
    let certs = dir.join("certs");
    dev_certs(&certs, &["payments", "bank", "reporting"]);
    let other_ca = dir.join("other");
    dev_certs(&other_ca, &["bank"]);

    let flags = tls_flags(&certs, "payments");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut args = vec!["--name", "payments"];
    args.extend(&flags);
    let payments = Node::start(&dir.join("payments"), Engine::Jit, &args);
    let url = https(&payments);
    let mut p = client(&url, &certs, None).await.expect("connects");
    let status = p
        .status(pb::StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert!(status.tls && status.peer_certs && !status.insecure);
    p.deploy(pb::DeployRequest {
        source: "event Paid { order: string, cents: int }\nexport to bank { Paid }".into(),
        origin: "payments.dmp".into(),
    })
    .await
    .expect("deploy");
    p.append(pb::AppendRequest {
        events: vec![event("Paid", r#"{"order":"o1","cents":500}"#, "", "p1")],
        expected: vec![],
        read_back: Vec::new(),
    })
    .await
    .expect("append");

    // The bank imports over mutual TLS: its link presents its own certificate.
    let flags = tls_flags(&certs, "bank");
    let peer = format!("payments={url}");
    let mut args: Vec<&str> = vec!["--name", "bank", "--peer", &peer];
    args.extend(flags.iter().map(String::as_str));
    let bank = Node::start(&dir.join("bank"), Engine::Jit, &args);
    let mut b = client(&https(&bank), &certs, None).await.expect("connects");
    b.deploy(pb::DeployRequest {
        source: "event Credited { order: string, cents: int }
projection credits { key order state { cents: int } on Credited { cents += event.cents } }
import payments {
  event Paid { order: string, cents: int }
  on Paid { emit Credited { order: event.order, cents: event.cents } }
}"
        .into(),
        origin: "bank.dmp".into(),
    })
    .await
    .expect("deploy");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = b
            .get(pb::GetRequest {
                projection: "credits".into(),
                key: "o1".into(),
                ..Default::default()
            })
            .await;
        if let Ok(doc) = &got {
            assert!(
                doc.get_ref().document.contains("500"),
                "{:?}",
                doc.get_ref()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the bank did not import over mutual TLS: {:?} {:?}",
            got,
            b.status(pb::StatusRequest {})
                .await
                .map(|s| s.into_inner().links)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A certificate naming another node reads as that node only: reporting's
    // certificate does not read what is exported to the bank, whatever it claims.
    let mut reporting = client(&url, &certs, Some("reporting"))
        .await
        .expect("a certificate of the mesh's CA connects");
    let refused = reporting
        .export(export_request("bank"))
        .await
        .expect_err("claims to be the bank");
    assert_refused(&refused, Code::PermissionDenied, "`reporting`");
    // No certificate (and no token): the node does not take a claimed name.
    let refused = p
        .export(export_request("bank"))
        .await
        .expect_err("no certificate");
    assert_refused(&refused, Code::Unauthenticated, "datamesh://bank");
    // The bank's certificate does read it.
    let mut as_bank = client(&url, &certs, Some("bank")).await.expect("connects");
    let mut stream = as_bank
        .export(export_request("bank"))
        .await
        .expect("the bank's certificate reads the bank's export")
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("in time")
        .expect("a message")
        .expect("hello");
    assert!(matches!(
        first.kind,
        Some(pb::export_message::Kind::Hello(_))
    ));
    // A certificate "bank" from another CA fails the handshake: a name counts only
    // when the mesh's CA signed it.
    let forged = ClientTls {
        ca: Some(certs.join("ca.pem")),
        cert: Some(other_ca.join("bank.pem")),
        key: Some(other_ca.join("bank.key")),
    };
    let refused = match datamesh_runtime::connect::channel(&url, &forged).await {
        Err(e) => e,
        Ok(channel) => DataMeshClient::new(channel)
            .export(export_request("bank"))
            .await
            .expect_err("a certificate of another CA")
            .to_string(),
    };
    assert!(!refused.is_empty());

    // A plaintext client is told to use TLS, and nothing changes.
    let mut plain = DataMeshClient::connect(payments.url.clone())
        .await
        .expect("TCP connects");
    let refused = plain
        .append(pb::AppendRequest {
            events: vec![event("Paid", r#"{"order":"o2","cents":1}"#, "", "p2")],
            expected: vec![],
            read_back: Vec::new(),
        })
        .await
        .expect_err("plaintext");
    assert_refused(&refused, Code::FailedPrecondition, "https://");
    let (code, _, err) = cli_at(&payments.url, &["status"]);
    assert_eq!(code, 1);
    assert!(err.contains("this node serves TLS"), "{err}");
    // The CLI with the CA works; without it the certificate is not trusted.
    let ca = certs.join("ca.pem");
    let (code, out, err) = cli_at(
        &url,
        &["--ca", ca.to_str().expect("utf-8"), "status", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("\"head\": 1,"),
        "the plaintext append changed nothing: {out}"
    );
    let (code, _, err) = cli_at(&url, &["status"]);
    assert_eq!(code, 1);
    assert!(err.contains("certificate"), "{err}");
}

/// Copies the certificate and key of `name` in `from` over `cert` and `key`.
fn install(from: &Path, name: &str, cert: &Path, key: &Path) {
    std::fs::copy(from.join(format!("{name}.pem")), cert).expect("copy cert");
    std::fs::copy(from.join(format!("{name}.key")), key).expect("copy key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reload_on_sighup_without_dropping_the_node() {
    let guard = temp_dir("tls-reload", Engine::Jit);
    let dir = guard.path();
    let (old, new) = (dir.join("old"), dir.join("new"));
    dev_certs(&old, &["node"]);
    dev_certs(&new, &["node"]);
    let (cert, key): (PathBuf, PathBuf) = (dir.join("node.pem"), dir.join("node.key"));
    install(&old, "node", &cert, &key);
    let node = Node::start(
        &dir.join("data"),
        Engine::Jit,
        &[
            "--tls-cert",
            cert.to_str().expect("utf-8"),
            "--tls-key",
            key.to_str().expect("utf-8"),
        ],
    );
    let url = https(&node);
    let mut before = client(&url, &old, None).await.expect("the old CA");
    before.status(pb::StatusRequest {}).await.expect("status");
    assert!(
        client(&url, &new, None).await.is_err(),
        "not yet the new CA"
    );

    install(&new, "node", &cert, &key);
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &node.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(hup.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = loop {
        if let Ok(c) = client(&url, &new, None).await {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not loaded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    after.status(pb::StatusRequest {}).await.expect("status");
    // The connection made before goes on; a new one with the old CA does not.
    before
        .status(pb::StatusRequest {})
        .await
        .expect("the open connection survives the reload");
    assert!(client(&url, &old, None).await.is_err());

    // Broken files leave the certificate in force.
    std::fs::write(&cert, "not a certificate").expect("write");
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &node.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(hup.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logged = node
            .stderr
            .lock()
            .map(|l| l.iter().any(|l| l.contains("cannot reload the TLS files")))
            .unwrap_or(false);
        if logged {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no error logged for the broken file"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client(&url, &new, None)
        .await
        .expect("the loaded certificate stays in force")
        .status(pb::StatusRequest {})
        .await
        .expect("status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_finish_a_handshake_do_not_stop_a_tls_node() {
    use tokio::io::AsyncWriteExt;
    let guard = temp_dir("tls-hostile", Engine::Jit);
    let dir = guard.path();
    let certs = dir.join("certs");
    dev_certs(&certs, &["node"]);
    let flags = tls_flags(&certs, "node");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let node = Node::start(&dir.join("data"), Engine::Jit, &flags);
    let address = node.url.trim_start_matches("http://").to_owned();
    // Idle connections, one sending a megabyte of garbage, one a TLS record header
    // announcing more than it sends.
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(
            tokio::net::TcpStream::connect(&address)
                .await
                .expect("connects"),
        );
    }
    let mut garbage = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connects");
    let _ = garbage.write_all(&vec![0x16; 1 << 20]).await;
    let mut torn = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connects");
    let _ = torn.write_all(&[0x16, 0x03, 0x01, 0x40, 0x00, 0x01]).await;
    // The node still serves, promptly.
    let started = Instant::now();
    client(&https(&node), &certs, None)
        .await
        .expect("connects")
        .status(pb::StatusRequest {})
        .await
        .expect("status");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(idle);
}
