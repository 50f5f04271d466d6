//! Tokens and roles (issue 15, second part): with tokens in its data directory a node
//! refuses every call without a valid one (UNAUTHENTICATED) and every call its role
//! does not allow (PERMISSION_DENIED), changing nothing; tokens are made, listed and
//! revoked with `datamesh token` against the data directory, running or not; a link
//! presents the token its peer gave it and reads only as the peer the token names.

mod common;

use std::time::{Duration, Instant};

use common::*;
use datamesh_runtime::api::pb;
use tonic::{Code, Request};

fn with<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_need_a_token_whose_role_allows_them_and_refusals_change_nothing() {
    let guard = temp_dir("tokens", Engine::Jit);
    let data = guard.path().join("data");
    // The first admin token needs no network: the node is not running yet.
    let admin = create_token(&data, "admin", "ops");
    let writer = create_token(&data, "writer", "orders service");
    let reader = create_token(&data, "reader", "dashboards");
    let node = Node::start(&data, Engine::Jit, &[]);
    let mut client = node.client().await;

    let refused = client
        .status(pb::StatusRequest {})
        .await
        .expect_err("no token");
    assert_eq!(
        refused.code(),
        Code::Unauthenticated,
        "{}",
        refused.message()
    );
    let refused = client
        .status(with(pb::StatusRequest {}, "dmt_00000000_00"))
        .await
        .expect_err("a made-up token");
    assert_eq!(refused.code(), Code::Unauthenticated);
    let status = client
        .status(with(pb::StatusRequest {}, &reader))
        .await
        .expect("a reader may ask for status")
        .into_inner();
    assert!(status.auth);

    let deposit = || pb::AppendRequest {
        events: vec![event("Deposited", r#"{"account":"a1","amount":5}"#, "", "")],
        expected: vec![],
        read_back: Vec::new(),
    };
    let refused = client
        .append(with(deposit(), &reader))
        .await
        .expect_err("a reader may not append");
    assert_eq!(
        refused.code(),
        Code::PermissionDenied,
        "{}",
        refused.message()
    );
    assert!(
        refused.message().contains("role reader"),
        "{}",
        refused.message()
    );
    let refused = client
        .deploy(with(
            pb::DeployRequest {
                source: "event Deposited { account: string, amount: int }".into(),
                origin: "x.dmp".into(),
            },
            &writer,
        ))
        .await
        .expect_err("a writer may not deploy");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let status = client
        .status(with(pb::StatusRequest {}, &admin))
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.head, 0, "nothing a refused call sent was appended");
    assert!(status.projections.is_empty());
    client
        .append(with(deposit(), &writer))
        .await
        .expect("a writer appends");

    // Scopes: a writer of some types, a reader of some projections (not the log).
    let deposits_only = create_scoped(&data, "writer", "deposits", Some("Deposited"));
    let balances_only = create_scoped(&data, "reader", "balances", Some("balances"));
    let withdrawal = pb::AppendRequest {
        events: vec![event("Withdrawn", r#"{"account":"a1","amount":5}"#, "", "")],
        expected: vec![],
        read_back: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // The node picks the new tokens up within a second.
        match client.append(with(deposit(), &deposits_only)).await {
            Ok(_) => break,
            Err(status) if status.code() == Code::Unauthenticated && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    }
    let refused = client
        .append(with(withdrawal, &deposits_only))
        .await
        .expect_err("out of scope");
    assert_eq!(
        refused.code(),
        Code::PermissionDenied,
        "{}",
        refused.message()
    );
    let refused = client
        .read(with(pb::ReadRequest::default(), &balances_only))
        .await
        .expect_err("a scoped reader does not read the log");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = client
        .get(with(
            pb::GetRequest {
                projection: "secrets".into(),
                key: "a1".into(),
                ..Default::default()
            },
            &balances_only,
        ))
        .await
        .expect_err("out of scope");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let head = |r: pb::StatusResponse| r.head;
    let before = head(
        client
            .status(with(pb::StatusRequest {}, &reader))
            .await
            .expect("status")
            .into_inner(),
    );

    // The CLI sends the token of --token-file or DATAMESH_TOKEN.
    let file = guard.path().join("admin.token");
    std::fs::write(&file, format!("{admin}\n")).expect("write");
    let (code, out, err) = node.cli(&[
        "--token-file",
        file.to_str().expect("utf-8"),
        "status",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("\"head\": {before}")), "{out}");
    let (code, _, err) = node.cli(&["status"]);
    assert_ne!(code, 0);
    assert!(err.contains("requires a token"), "{err}");

    // Admin actions are in the audit trail with who made them; refused ones are not.
    client
        .deploy(with(
            pb::DeployRequest {
                source: "event Deposited { account: string, amount: int }".into(),
                origin: "deposits.dmp".into(),
            },
            &admin,
        ))
        .await
        .expect("an admin deploys");
    let (code, out, err) = cli_at(
        &node.url,
        &["audit", "--data", data.to_str().expect("utf-8")],
    );
    assert_eq!(code, 0, "{out}{err}");
    let entries: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        actions,
        [
            "token create",
            "token create",
            "token create",
            "token create",
            "token create",
            "deploy"
        ],
        "{out}"
    );
    let deploy = entries.last().expect("deploy");
    assert_eq!(deploy["by"]["name"], "ops");
    assert_eq!(deploy["by"]["role"], "admin");
    assert_eq!(deploy["details"]["origin"], "deposits.dmp");
    assert!(!out.contains("dmt_"), "no secret in the audit trail");

    // Through the node: an admin manages tokens over the API; no one else may.
    let (code, out, err) = node.cli(&[
        "--token-file",
        file.to_str().expect("utf-8"),
        "token",
        "create",
        "--role",
        "reader",
        "--name",
        "made online",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("\"token\":\"dmt_"), "{out}");
    let refused = client
        .token_create(with(
            pb::TokenCreateRequest {
                role: "admin".into(),
                name: "escalation".into(),
                scope: vec![],
            },
            &writer,
        ))
        .await
        .expect_err("a writer may not make tokens");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let missing = client
        .token_revoke(with(pb::TokenRevokeRequest { id: "nope".into() }, &admin))
        .await
        .expect_err("no such token");
    assert_eq!(missing.code(), Code::NotFound);
    let listed = client
        .token_list(with(pb::TokenListRequest {}, &admin))
        .await
        .expect("list")
        .into_inner()
        .tokens;
    assert_eq!(listed.len(), 6);
    assert!(
        listed
            .iter()
            .any(|t| t.name == "made online" && t.role == "reader")
    );

    // Revoked while the node runs: refused within about a second.
    let (code, out, _) = cli_at(
        &node.url,
        &["token", "list", "--data", data.to_str().expect("utf-8")],
    );
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 6);
    assert!(!out.contains(&writer), "a list never shows a secret");
    let writer_id = writer.split('_').nth(1).expect("id");
    let (code, out, err) = cli_at(
        &node.url,
        &[
            "token",
            "revoke",
            writer_id,
            "--data",
            data.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let (_, out, _) = cli_at(
        &node.url,
        &["audit", "--data", data.to_str().expect("utf-8")],
    );
    assert!(
        out.lines()
            .last()
            .is_some_and(|l| l.contains("token revoke")),
        "{out}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.append(with(deposit(), &writer)).await {
            Err(status) if status.code() == Code::Unauthenticated => break,
            other => {
                assert!(Instant::now() < deadline, "still accepted: {other:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_presents_its_token_and_reads_only_as_the_peer_it_names() {
    let guard = temp_dir("tokens-mesh", Engine::Jit);
    let dir = guard.path();
    let payments_data = dir.join("payments");
    let admin = create_token(&payments_data, "admin", "ops");
    let bank_token = create_token(&payments_data, "peer:bank", "the bank's link");
    let other_token = create_token(&payments_data, "peer:reporting", "reporting's link");
    let socket = dir.join("payments.sock");
    let payments = Node::start(
        &payments_data,
        Engine::Jit,
        &[
            "--name",
            "payments",
            "--socket",
            socket.to_str().expect("utf-8"),
        ],
    );
    let mut p = payments.client().await;
    let program = "event Paid { order: string, cents: int }\nexport to bank { Paid }";
    p.deploy(with(
        pb::DeployRequest {
            source: program.into(),
            origin: "payments.dmp".into(),
        },
        &admin,
    ))
    .await
    .expect("deploy");
    p.append(with(
        pb::AppendRequest {
            events: vec![event("Paid", r#"{"order":"o1","cents":500}"#, "", "p1")],
            expected: vec![],
            read_back: Vec::new(),
        },
        &admin,
    ))
    .await
    .expect("append");

    // A peer token reads only as the peer it was made for.
    let refused = p
        .export(with(
            pb::ExportRequest {
                peer: "bank".into(),
                from_position: 0,
            },
            &other_token,
        ))
        .await
        .expect_err("reporting's token does not read the bank's export");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = p
        .status(with(pb::StatusRequest {}, &bank_token))
        .await
        .expect_err("a peer token only reads its export");
    assert_eq!(refused.code(), Code::PermissionDenied);

    let bank_program = "event Credited { order: string, cents: int }
projection credits { key order state { cents: int } on Credited { cents += event.cents } }
import payments {
  event Paid { order: string, cents: int }
  on Paid { emit Credited { order: event.order, cents: event.cents } }
}";
    let peer = format!("payments=unix:{}", socket.display());
    // Without a token the link is refused, and says why.
    let lost = Node::start(
        &dir.join("lost"),
        Engine::Jit,
        &["--name", "bank", "--peer", &peer],
    );
    let mut l = lost.client().await;
    l.deploy(pb::DeployRequest {
        source: bank_program.into(),
        origin: "bank.dmp".into(),
    })
    .await
    .expect("deploy");
    // With the token payments made for it, it imports.
    let token_file = dir.join("payments.token");
    std::fs::write(&token_file, &bank_token).expect("write");
    let peer_token = format!("payments={}", token_file.display());
    let bank = Node::start(
        &dir.join("bank"),
        Engine::Jit,
        &[
            "--name",
            "bank",
            "--peer",
            &peer,
            "--peer-token",
            &peer_token,
        ],
    );
    let mut b = bank.client().await;
    b.deploy(pb::DeployRequest {
        source: bank_program.into(),
        origin: "bank.dmp".into(),
    })
    .await
    .expect("deploy");
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut imported, mut refused) = (false, false);
    while !(imported && refused) {
        assert!(
            Instant::now() < deadline,
            "imported {imported}, refused {refused}"
        );
        let status = b
            .status(pb::StatusRequest {})
            .await
            .expect("status")
            .into_inner();
        imported = status
            .links
            .iter()
            .any(|k| k.peer == "payments" && k.imported == 1);
        let status = l
            .status(pb::StatusRequest {})
            .await
            .expect("status")
            .into_inner();
        refused = status.links.iter().any(|k| {
            k.peer == "payments" && k.state == "refused" && k.error.contains("requires a token")
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(read_all(&mut l).await.is_empty());
    assert_eq!(read_all(&mut b).await.len(), 1);
}

/// Calls `rpc` with a request that would change or read something, sending `token`.
async fn call(
    client: &mut pb::data_mesh_client::DataMeshClient<tonic::transport::Channel>,
    rpc: &str,
    token: Option<&str>,
    admin_id: &str,
) -> Result<(), tonic::Status> {
    fn req<T>(message: T, token: Option<&str>) -> Request<T> {
        match token {
            Some(token) => with(message, token),
            None => Request::new(message),
        }
    }
    macro_rules! go {
        ($method:ident, $message:expr) => {
            client.$method(req($message, token)).await.map(|_| ())
        };
    }
    match rpc {
        "Append" => go!(
            append,
            pb::AppendRequest {
                events: vec![event("Deposited", r#"{"account":"a9","amount":1}"#, "", "")],
                expected: vec![],
                read_back: Vec::new(),
            }
        ),
        "Read" => go!(read, pb::ReadRequest::default()),
        "Subscribe" => go!(subscribe, pb::SubscribeRequest::default()),
        "Get" => go!(
            get,
            pb::GetRequest {
                projection: "balances".into(),
                key: "a1".into(),
                ..Default::default()
            }
        ),
        "Scan" => go!(
            scan,
            pb::ScanRequest {
                projection: "balances".into(),
                ..Default::default()
            }
        ),
        "Deploy" => go!(
            deploy,
            pb::DeployRequest {
                source: format!("{PROGRAM}\nevent Other {{ x: int }}"),
                origin: "intruder.dmp".into(),
            }
        ),
        "ListProjections" => go!(list_projections, pb::ListProjectionsRequest::default()),
        "Status" => go!(status, pb::StatusRequest {}),
        "Promote" => go!(
            promote,
            pb::PromoteRequest {
                name: "balances".into(),
                version: 1,
            }
        ),
        "Retire" => go!(
            retire,
            pb::RetireRequest {
                name: "balances".into(),
                version: 1,
            }
        ),
        "Export" => go!(
            export,
            pb::ExportRequest {
                peer: "bank".into(),
                from_position: 0,
            }
        ),
        "LinkReset" => go!(
            link_reset,
            pb::LinkResetRequest {
                peer: "bank".into(),
                from_position: 0,
                note: String::new(),
            }
        ),
        "TokenCreate" => go!(
            token_create,
            pb::TokenCreateRequest {
                role: "admin".into(),
                name: "escalation".into(),
                scope: vec![],
            }
        ),
        "TokenList" => go!(token_list, pb::TokenListRequest {}),
        "TokenRevoke" => go!(
            token_revoke,
            pb::TokenRevokeRequest {
                id: admin_id.into(),
            }
        ),
        "Audit" => go!(audit, pb::AuditRequest { last: 0 }),
        other => panic!("no call for the RPC {other}: add it to this test"),
    }
}

const PROGRAM: &str = "event Deposited { account: string, amount: int }
projection balances { key account state { total: int } on Deposited { total += event.amount } }
export to bank { Deposited }";

/// What a refused call must leave as it was.
async fn snapshot(
    client: &mut pb::data_mesh_client::DataMeshClient<tonic::transport::Channel>,
    admin: &str,
) -> String {
    let status = client
        .status(with(pb::StatusRequest {}, admin))
        .await
        .expect("status")
        .into_inner();
    let tokens = client
        .token_list(with(pb::TokenListRequest {}, admin))
        .await
        .expect("tokens")
        .into_inner();
    let audit = client
        .audit(with(pb::AuditRequest { last: 10_000 }, admin))
        .await
        .expect("audit")
        .into_inner();
    format!(
        "head {} projections {:?} tokens {:?} audit {}",
        status.head,
        status
            .projections
            .iter()
            .map(|p| (p.name.clone(), p.version, p.active, p.position))
            .collect::<Vec<_>>(),
        tokens
            .tokens
            .iter()
            .map(|t| (t.id.clone(), t.revoked.clone()))
            .collect::<Vec<_>>(),
        audit.entries.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_refuses_no_token_a_revoked_one_and_each_wrong_role_and_changes_nothing() {
    let guard = temp_dir("tokens-matrix", Engine::Jit);
    let data = guard.path().join("data");
    let admin = create_token(&data, "admin", "ops");
    let admin_id = admin
        .strip_prefix("dmt_")
        .and_then(|rest| rest.split('_').next())
        .expect("id")
        .to_owned();
    let writer = create_token(&data, "writer", "w");
    let reader = create_token(&data, "reader", "r");
    let peer = create_token(&data, "peer:bank", "bank");
    let revoked = create_token(&data, "admin", "former ops");
    let revoked_id = revoked
        .strip_prefix("dmt_")
        .and_then(|rest| rest.split('_').next())
        .expect("id")
        .to_owned();
    let (code, out, err) = cli_at(
        "http://127.0.0.1:1",
        &[
            "token",
            "revoke",
            &revoked_id,
            "--data",
            data.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let node = Node::start(&data, Engine::Jit, &["--name", "payments"]);
    let mut client = node.client().await;
    client
        .deploy(with(
            pb::DeployRequest {
                source: PROGRAM.into(),
                origin: "payments.dmp".into(),
            },
            &admin,
        ))
        .await
        .expect("deploy");
    client
        .append(with(
            pb::AppendRequest {
                events: vec![event("Deposited", r#"{"account":"a1","amount":5}"#, "", "")],
                expected: vec![],
                read_back: Vec::new(),
            },
            &admin,
        ))
        .await
        .expect("append");
    // Folded, so that the projection's position does not move under the snapshots.
    client
        .get(with(
            pb::GetRequest {
                projection: "balances".into(),
                key: "a1".into(),
                min_position: 1,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("folded");
    let before = snapshot(&mut client, &admin).await;

    // Every RPC of the service is in this table, with the roles that may call it.
    let proto = std::fs::read_to_string(root().join("runtime/proto/datamesh/v1/datamesh.proto"))
        .expect("proto");
    let rpcs: Vec<&str> = proto
        .lines()
        .filter_map(|l| l.trim().strip_prefix("rpc "))
        .filter_map(|l| l.split('(').next())
        .collect();
    assert!(rpcs.len() >= 16, "{rpcs:?}");
    let allowed = |rpc: &str, role: &str| match role {
        "writer" => rpc == "Append",
        "reader" => matches!(
            rpc,
            "Read" | "Subscribe" | "Get" | "Scan" | "ListProjections" | "Status"
        ),
        "peer:bank" => rpc == "Export",
        _ => false,
    };
    let mut checked = 0;
    for rpc in &rpcs {
        for (who, token, expected) in [
            ("no token", None, Code::Unauthenticated),
            (
                "a revoked token",
                Some(revoked.as_str()),
                Code::Unauthenticated,
            ),
            (
                "a made-up token",
                Some("dmt_deadbeef_00"),
                Code::Unauthenticated,
            ),
            ("writer", Some(writer.as_str()), Code::PermissionDenied),
            ("reader", Some(reader.as_str()), Code::PermissionDenied),
            ("peer:bank", Some(peer.as_str()), Code::PermissionDenied),
        ] {
            if allowed(rpc, who) {
                continue;
            }
            let refused = call(&mut client, rpc, token, &admin_id)
                .await
                .expect_err(&format!("{rpc} with {who}"));
            assert_eq!(
                refused.code(),
                expected,
                "{rpc} with {who}: {}",
                refused.message()
            );
            checked += 1;
        }
    }
    assert!(checked > 60, "{checked}");
    assert_eq!(
        snapshot(&mut client, &admin).await,
        before,
        "a refused call changed something"
    );
    // The allowed ones are allowed (the table is not refusing everything).
    for (rpc, token) in [
        ("Append", &writer),
        ("Get", &reader),
        ("Status", &reader),
        ("Export", &peer),
        ("Audit", &admin),
    ] {
        call(&mut client, rpc, Some(token), &admin_id)
            .await
            .unwrap_or_else(|e| panic!("{rpc}: {e:?}"));
    }
}
