//! The `tern` binary end to end: `serve` in its own process, then the client commands a
//! user types (stream add/ls/info/rm, pub with ids and JSON lines, sub with groups and
//! acks), their JSON output, one-line errors with a non-zero exit, and a clean exit 0 on
//! SIGTERM.

mod common;

use common::{free_port, stdout_lines, NodeProcess};

#[test]
fn cli_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut node = NodeProcess::spawn(dir.path(), &addr);

    let out = stdout_lines(&node.cli(&[
        "stream",
        "add",
        "orders",
        "--subjects",
        "orders.>",
        "--max-age",
        "7d",
        "--json",
    ]));
    assert_eq!(out[0]["name"], "orders");
    assert_eq!(out[0]["max_age_ms"], 7 * 24 * 3600 * 1000u64);

    let first = stdout_lines(&node.cli(&[
        "pub",
        "orders.eu",
        "hello",
        "--id",
        "o-1",
        "--key",
        "cust-1",
        "--header",
        "a=b",
        "--json",
    ]));
    assert_eq!(first[0]["seq"], 1);
    assert_eq!(first[0]["duplicate"], false);
    let again = stdout_lines(&node.cli(&["pub", "orders.eu", "hello", "--id", "o-1", "--json"]));
    assert_eq!(again[0]["seq"], 1);
    assert_eq!(again[0]["duplicate"], true);

    let lines = "{\"id\":\"j-1\",\"key\":\"k\",\"headers\":{\"h\":\"v\"},\"data\":\"one\"}\n\
                 {\"id\":\"j-2\",\"data\":\"two\"}\n{\"id\":\"j-1\",\"data\":\"one again\"}\n";
    let acks = stdout_lines(&node.cli_stdin(
        &[
            "pub",
            "orders.us",
            "--stdin",
            "--line-format",
            "json",
            "--json",
        ],
        Some(lines),
    ));
    let got: Vec<_> = acks
        .iter()
        .map(|a| (a["id"].clone(), a["seq"].clone(), a["duplicate"].clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("j-1".into(), 2.into(), false.into()),
            ("j-2".into(), 3.into(), false.into()),
            ("j-1".into(), 2.into(), true.into()),
        ]
    );
    let text = node.cli_stdin(&["pub", "orders.us", "--stdin", "--json"], Some("a\nb\n"));
    assert_eq!(stdout_lines(&text).len(), 2);

    let msgs = stdout_lines(&node.cli(&["sub", "orders.>", "--max", "5", "--json"]));
    assert_eq!(msgs.len(), 5);
    assert_eq!(msgs[0]["id"], "o-1");
    assert_eq!(msgs[0]["key"], "cust-1");
    assert_eq!(msgs[0]["headers"]["a"], "b");
    assert_eq!(msgs[0]["data"], "hello");
    assert_eq!(msgs[0]["delivery_count"], 1);
    assert_eq!(msgs[1]["data"], "one");
    let seqs: Vec<_> = msgs.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);

    // A group with acks: a second run of the same group sees nothing already acked.
    let g1 = stdout_lines(&node.cli(&[
        "sub", "orders.>", "--group", "billing", "--ack", "--max", "3", "--json",
    ]));
    assert_eq!(g1.len(), 3);
    let g2 = stdout_lines(&node.cli(&[
        "sub",
        "orders.>",
        "--group",
        "billing",
        "--ack",
        "--idle-timeout",
        "1",
        "--json",
    ]));
    let g2_seqs: Vec<_> = g2.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(g2_seqs, vec![4, 5]);
    let from = stdout_lines(&node.cli(&[
        "sub",
        "orders.>",
        "--from",
        "4",
        "--idle-timeout",
        "1",
        "--json",
    ]));
    assert_eq!(from.len(), 2);

    let info = stdout_lines(&node.cli(&["stream", "info", "orders", "--json"]));
    assert_eq!(info[0]["msgs"], 5);
    let ls = stdout_lines(&node.cli(&["stream", "ls", "--json"]));
    assert!(ls.iter().any(|s| s["name"] == "orders"));
    assert!(
        ls.iter().any(|s| s["name"] == "orders-dlq"),
        "groups get a dead-letter stream"
    );

    // Errors: one line on stderr, non-zero exit.
    for args in [
        vec!["pub", "nowhere.x", "x"],
        vec!["stream", "info", "missing"],
        vec!["stream", "add", "bad", "--subjects", "a..b"],
        vec!["sub", "orders.>", "--ack"],
    ] {
        let o = node.cli(&args);
        assert!(!o.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{err}");
    }

    let rm = stdout_lines(&node.cli(&["stream", "rm", "orders", "--json"]));
    assert_eq!(rm[0]["removed"], "orders");
    let status = node.sigterm();
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
}
