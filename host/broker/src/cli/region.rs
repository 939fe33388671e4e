//! `tern region`: how a node sees its region, and adding or removing a member.

use std::fmt::Write;

use clap::Subcommand;
use serde::Deserialize;
use tern_client::{ClientError, ErrorCode};

use super::common::ClientArgs;

#[derive(Subcommand, Debug)]
pub enum RegionCmd {
    /// Show the region as the connected node sees it: its role, the leader, the term, the
    /// commit and applied indexes, and every member (with how far behind it is, when the
    /// node is the leader).
    Status(ClientArgs),
    /// Add a running node to the region as a voter. Send it to the leader: it waits for
    /// the node to catch up, then promotes it.
    AddNode {
        /// The node's region id.
        id: u64,
        /// Where the node's region endpoint listens, `host:port`.
        region_addr: String,
        /// Where the node serves clients, `host:port`.
        client_addr: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a node from the region. Send it to the leader.
    RemoveNode {
        /// The node's region id.
        id: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// The region status document of docs/protocol.md.
#[derive(Deserialize, Debug, PartialEq)]
struct Status {
    node_id: u64,
    state: String,
    leader: Option<u64>,
    term: u64,
    last_log_index: Option<u64>,
    commit_index: Option<u64>,
    last_applied: Option<u64>,
    #[serde(default)]
    snapshot_index: Option<u64>,
    #[serde(default)]
    purged_index: Option<u64>,
    members: Vec<Member>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Member {
    id: u64,
    region_addr: String,
    client_addr: String,
    voter: bool,
    matched: Option<u64>,
    lag: Option<u64>,
}

pub async fn run(cmd: RegionCmd) -> anyhow::Result<()> {
    match cmd {
        RegionCmd::Status(c) => {
            c.show_status(
                "region status",
                |client| async move { client.region_status().await },
                render,
            )
            .await?
        }
        RegionCmd::AddNode {
            id,
            region_addr,
            client_addr,
            client: c,
        } => {
            let client = c.connect().await?;
            let added = client.add_node(id, &region_addr, &client_addr).await;
            client.close().await;
            added.map_err(|e| explain(e, &c))?;
            if c.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "added": id,
                        "region_addr": region_addr,
                        "client_addr": client_addr,
                    })
                );
            } else {
                println!("node {id} is a voter of the region");
            }
        }
        RegionCmd::RemoveNode { id, client: c } => {
            let client = c.connect().await?;
            let removed = client.remove_node(id).await;
            client.close().await;
            removed.map_err(|e| explain(e, &c))?;
            if c.json {
                println!("{}", serde_json::json!({ "removed": id }));
            } else {
                println!("node {id} left the region");
            }
        }
    }
    Ok(())
}

/// A membership change sent to a follower says where the leader is; tell the operator.
fn explain(e: ClientError, c: &ClientArgs) -> anyhow::Error {
    if !matches!(&e, ClientError::Server(b) if b.code == ErrorCode::NotLeader) {
        return e.into();
    }
    let node = c.server.join(",");
    match e.leader_addr() {
        Some(leader) => anyhow::anyhow!(
            "{node} is not the region leader; the leader serves clients at {leader} \
             (retry with --server {leader})"
        ),
        None => anyhow::anyhow!("{node} is not the region leader and knows of none; retry shortly"),
    }
}

fn or_dash(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// The status as a header line and a table of members (the leader marked with `*`).
fn render(s: &Status) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "node {} ({})  leader {}  term {}  commit index {}  last applied {}  last log index {}  \
         snapshot {}  purged {}",
        s.node_id,
        s.state,
        or_dash(s.leader),
        s.term,
        or_dash(s.commit_index),
        or_dash(s.last_applied),
        or_dash(s.last_log_index),
        or_dash(s.snapshot_index),
        or_dash(s.purged_index),
    );
    let _ = writeln!(
        out,
        "{:>6} {:<8} {:<6} {:<24} {:<24} {:>10} {:>8}",
        "ID", "ROLE", "LEADER", "REGION ADDR", "CLIENT ADDR", "MATCHED", "LAG"
    );
    for m in &s.members {
        let _ = writeln!(
            out,
            "{:>6} {:<8} {:<6} {:<24} {:<24} {:>10} {:>8}",
            m.id,
            if m.voter { "voter" } else { "learner" },
            if s.leader == Some(m.id) { "*" } else { "" },
            m.region_addr,
            if m.client_addr.is_empty() {
                "-"
            } else {
                &m.client_addr
            },
            or_dash(m.matched),
            or_dash(m.lag),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document tern-region's own test pins (host/region/src/admin.rs).
    const LEADER_JSON: &str = concat!(
        r#"{"node_id":1,"state":"leader","leader":1,"term":3,"last_log_index":10,"#,
        r#""commit_index":9,"last_applied":9,"snapshot_index":6,"purged_index":4,"members":["#,
        r#"{"id":1,"region_addr":"a:7500","client_addr":"a:7420","voter":true,"matched":10,"lag":0},"#,
        r#"{"id":2,"region_addr":"b:7500","client_addr":"b:7420","voter":true,"matched":7,"lag":3},"#,
        r#"{"id":3,"region_addr":"c:7500","client_addr":"","voter":false,"matched":null,"lag":11}]}"#,
    );

    #[test]
    fn status_table() {
        let s: Status = serde_json::from_str(LEADER_JSON).unwrap();
        let text = render(&s);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(
            lines[0],
            "node 1 (leader)  leader 1  term 3  commit index 9  last applied 9  last log index 10  \
             snapshot 6  purged 4"
        );
        let cells = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(
            cells(lines[2]),
            ["1", "voter", "*", "a:7500", "a:7420", "10", "0"]
        );
        assert_eq!(
            cells(lines[3]),
            ["2", "voter", "b:7500", "b:7420", "7", "3"]
        );
        assert_eq!(cells(lines[4]), ["3", "learner", "c:7500", "-", "-", "11"]);
    }

    #[test]
    fn commands_parse() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "tern", "region", "add-node", "4", "n4:7500", "n4:7420", "--server", "n1:7420",
        ])
        .unwrap();
        let crate::cli::Command::Region(RegionCmd::AddNode {
            id,
            region_addr,
            client_addr,
            client,
        }) = cli.command
        else {
            panic!("not add-node: {:?}", cli.command);
        };
        assert_eq!(
            (id, region_addr.as_str(), client_addr.as_str()),
            (4, "n4:7500", "n4:7420")
        );
        assert_eq!(client.server, ["n1:7420"]);
        for args in [
            &["tern", "region", "status", "--json"][..],
            &["tern", "region", "remove-node", "4", "--json"],
        ] {
            crate::cli::Cli::try_parse_from(args).unwrap();
        }
        assert!(crate::cli::Cli::try_parse_from(["tern", "region", "add-node", "4"]).is_err());
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let json = r#"{"node_id":2,"state":"follower","leader":null,"term":0,"last_log_index":null,
            "commit_index":null,"last_applied":null,"members":[],"new_field":1}"#;
        let s: Status = serde_json::from_str(json).unwrap();
        assert!(render(&s).starts_with("node 2 (follower)  leader -  term 0"));
    }
}
