//! The mesh example (`examples/mesh/run.sh`) as a user runs it: four nodes as real
//! processes, plain and over mutual TLS (`--tls`), every link live with what each
//! node computed from the others' events.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Runs the script with `args` (at most 120 s); its exit code and output.
fn run(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new("bash")
        .arg(root().join("examples/mesh/run.sh"))
        .args(args)
        .env("DATAMESH", BIN)
        .env_remove("BASE_PORT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash runs");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let code = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status.code();
        }
        if Instant::now() > deadline {
            // The script stops its nodes on TERM.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = format!(
        "{}\n--- stderr:\n{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    (code, text)
}

#[test]
fn the_mesh_example_runs_plain_and_over_mutual_tls() {
    for args in [&[][..], &["--tls"][..]] {
        let (code, out) = run(args);
        assert_eq!(code, Some(0), "run.sh {args:?}:\n{out}");
        assert!(out.contains("every link is live with lag 0"), "{out}");
        // What the bank folded from payments and cards, and reporting from the bank.
        assert!(
            out.contains(
                r#"{"key":"DE01","document":{"balance":56,"deposits":1,"withdrawals":2,"fees":2}}"#
            ),
            "{out}"
        );
        assert!(
            out.contains(r#"{"key":"DE02","document":{"amount":65}}"#),
            "{out}"
        );
        if args.contains(&"--tls") {
            assert!(out.contains("on https://127.0.0.1:"), "{out}");
        }
    }
}
