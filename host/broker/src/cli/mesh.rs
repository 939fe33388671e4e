//! `tern mesh`: how a node's links to other regions stand.

use std::fmt::Write;

use clap::Subcommand;
use serde::Deserialize;

use super::common::ClientArgs;

#[derive(Subcommand, Debug)]
pub enum MeshCmd {
    /// Show the connected node's links: for each other region and stream, the link's state,
    /// where it stands in the other region's copy, its lag, what it stored, skipped and
    /// denied, and its last error; and what residency kept from leaving this region.
    Status(ClientArgs),
}

/// The mesh status document of docs/protocol.md.
#[derive(Deserialize, Debug)]
struct Status {
    region: String,
    denied_sending: u64,
    links: Vec<Link>,
}

#[derive(Deserialize, Debug)]
struct Link {
    region: String,
    stream: String,
    state: String,
    after: u64,
    lag: Option<u64>,
    stored: u64,
    skipped: u64,
    denied: u64,
    #[serde(default)]
    conflicts: u64,
    last_error: Option<String>,
}

pub async fn run(cmd: MeshCmd) -> anyhow::Result<()> {
    match cmd {
        MeshCmd::Status(c) => {
            c.show_status(
                "mesh status",
                |client| async move { client.mesh_status().await },
                render,
            )
            .await?
        }
    }
    Ok(())
}

fn render(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "region {}: {} messages kept from leaving by residency",
        s.region, s.denied_sending
    );
    if s.links.is_empty() {
        let _ = writeln!(out, "no links copy streams into this region");
        return out;
    }
    let _ = writeln!(
        out,
        "{:<16} {:<16} {:<10} {:>10} {:>8} {:>10} {:>8} {:>7} {:>9}  last error",
        "from", "stream", "state", "after", "lag", "stored", "skipped", "denied", "conflicts"
    );
    for l in &s.links {
        let lag = l.lag.map_or("-".to_string(), |n| n.to_string());
        let _ = writeln!(
            out,
            "{:<16} {:<16} {:<10} {:>10} {:>8} {:>10} {:>8} {:>7} {:>9}  {}",
            l.region,
            l.stream,
            l.state,
            l.after,
            lag,
            l.stored,
            l.skipped,
            l.denied,
            l.conflicts,
            l.last_error.as_deref().unwrap_or("-")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_link() {
        let json = r#"{"region":"us-east","stored":5,"skipped":0,"denied_sending":2,"denied_receiving":1,
            "links":[{"region":"eu-west","stream":"orders","state":"up","after":9,"source_last_seq":12,
            "lag":3,"stored":5,"skipped":0,"denied":1,"conflicts":2,"last_error":null,"since_ms":1}]}"#;
        let s: Status = serde_json::from_str(json).unwrap();
        let text = render(&s);
        assert!(
            text.starts_with("region us-east: 2 messages kept"),
            "{text}"
        );
        let row = text.lines().nth(2).unwrap();
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cols,
            ["eu-west", "orders", "up", "9", "3", "5", "0", "1", "2", "-"]
        );
    }
}
