//! `tern plugin` end to end against a `tern serve` process: deploy a bundled component
//! (hook read from the component, parameters, attachment), see it act on `tern pub`, list it,
//! deploy a second version and roll back, read the audit trail, detach and remove; a file
//! that is not a component is refused with a one-line error and a non-zero exit.

mod common;

use common::{free_port, stdout_lines, NodeProcess};
use tern_plugin_guests as guests;

#[test]
fn plugin_commands_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let node = NodeProcess::spawn(dir.path(), &addr);
    for (name, subjects) in [("orders", "orders.>"), ("lanes", "lanes.>")] {
        stdout_lines(&node.cli(&["stream", "add", name, "--subjects", subjects, "--json"]));
    }

    let deployed = stdout_lines(&node.cli(&[
        "plugin",
        "deploy",
        guests::CONTENT_ROUTER,
        "--name",
        "lanes",
        "--stream",
        "orders",
        "--param",
        "default=to:lanes.v1.{subject}",
        "--by",
        "alice",
        "--json",
    ]));
    assert_eq!(deployed[0]["version"], 1);
    let ack = stdout_lines(&node.cli(&["pub", "orders.a", "x", "--json"]));
    assert_eq!(ack[0]["stream"], "lanes");

    // The hook comes from the component: lww-resolver is a `resolve` plugin.
    stdout_lines(&node.cli(&[
        "plugin",
        "deploy",
        guests::LWW_RESOLVER,
        "--name",
        "lww",
        "--stream",
        "orders",
        "--param",
        "field=$.updated_at",
        "--json",
    ]));
    let ls = stdout_lines(&node.cli(&["plugin", "ls", "--json"]));
    let plugins = ls[0]["plugins"].as_array().unwrap();
    let hooks: Vec<(&str, &str)> = plugins
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["hook"].as_str().unwrap()))
        .collect();
    assert_eq!(hooks, vec![("lanes", "route"), ("lww", "resolve")]);
    assert_eq!(
        plugins[0]["versions"][0]["params"]["default"],
        "to:lanes.v1.{subject}"
    );
    let table = String::from_utf8(node.cli(&["plugin", "ls"]).stdout).unwrap();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("lanes") && l.contains("orders")),
        "{table}"
    );

    // Nothing to roll back to yet.
    let out = node.cli(&["plugin", "rollback", "lanes"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("no earlier version"), "{err}");

    stdout_lines(&node.cli(&[
        "plugin",
        "deploy",
        guests::CONTENT_ROUTER,
        "--name",
        "lanes",
        "--param",
        "default=to:lanes.v2.{subject}",
        "--json",
    ]));
    let ack = stdout_lines(&node.cli(&["pub", "orders.b", "x", "--json"]));
    let got = stdout_lines(&node.cli(&[
        "sub",
        "lanes.>",
        "--from",
        &ack[0]["seq"].to_string(),
        "--max",
        "1",
        "--json",
    ]));
    assert_eq!(got[0]["subject"], "lanes.v2.orders.b");
    let back = stdout_lines(&node.cli(&["plugin", "rollback", "lanes", "--by", "bob", "--json"]));
    assert_eq!(back[0]["version"], 1);

    let audit = stdout_lines(&node.cli(&["plugin", "audit", "--json"]));
    let trail: Vec<(&str, &str, &str)> = audit
        .iter()
        .map(|e| {
            (
                e["plugin"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
                e["by"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(trail[0], ("lanes", "deploy", "alice"));
    assert_eq!(trail.last().unwrap(), &("lanes", "rollback", "bob"));
    assert_eq!(trail.len(), 4);

    // Not a component: refused, one line, non-zero exit; the running version stays.
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    let out = node.cli(&[
        "plugin",
        "deploy",
        junk.to_str().unwrap(),
        "--name",
        "lanes",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("invalid plugin component"), "{err}");
    let ack = stdout_lines(&node.cli(&["pub", "orders.c", "x", "--json"]));
    assert_eq!(ack[0]["stream"], "lanes");

    stdout_lines(&node.cli(&["plugin", "detach", "lanes", "--stream", "orders", "--json"]));
    let ack = stdout_lines(&node.cli(&["pub", "orders.d", "x", "--json"]));
    assert_eq!(ack[0]["stream"], "orders");
    stdout_lines(&node.cli(&["plugin", "rm", "lanes", "--json"]));
    stdout_lines(&node.cli(&["plugin", "rm", "lww", "--json"]));
    let ls = stdout_lines(&node.cli(&["plugin", "ls", "--json"]));
    assert!(ls[0]["plugins"].as_array().unwrap().is_empty());
}
