use clap::{Args, Subcommand};
use tern_client::{StreamConfig, StreamInfo};

use super::common::{parse_duration_ms, ClientArgs};

#[derive(Subcommand, Debug)]
pub enum StreamCmd {
    /// Create a stream bound to subjects.
    Add(AddArgs),
    /// List streams.
    Ls(ClientArgs),
    /// Show a stream's configuration and state.
    Info {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a stream with its messages and consumer groups.
    Rm {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args, Debug)]
pub struct AddArgs {
    name: String,
    /// Subjects the stream captures, comma-separated (e.g. `orders.>`).
    #[arg(long, required = true, value_delimiter = ',')]
    subjects: Vec<String>,
    /// Purge messages older than this (e.g. `7d`); unlimited when absent.
    #[arg(long, value_parser = parse_duration_ms)]
    max_age: Option<u64>,
    /// Keep at most this many payload bytes.
    #[arg(long)]
    max_bytes: Option<u64>,
    /// Keep at most this many messages.
    #[arg(long)]
    max_msgs: Option<u64>,
    /// Remember message ids this long for dedup (default: the node's, 24 h).
    #[arg(long, value_parser = parse_duration_ms)]
    dedup_window: Option<u64>,
    #[command(flatten)]
    client: ClientArgs,
}

fn info_json(i: &StreamInfo) -> serde_json::Value {
    serde_json::json!({
        "name": i.config.name,
        "subjects": i.config.subjects,
        "max_age_ms": i.config.max_age_ms,
        "max_bytes": i.config.max_bytes,
        "max_msgs": i.config.max_msgs,
        "dedup_window_ms": i.config.dedup_window_ms,
        "first_seq": i.state.first_seq,
        "last_seq": i.state.last_seq,
        "msgs": i.state.msgs,
        "bytes": i.state.bytes,
        "last_time_ms": i.state.last_time_ms,
    })
}

fn limit(v: u64) -> String {
    if v == 0 {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

fn print_info(i: &StreamInfo) {
    let c = &i.config;
    let s = &i.state;
    println!("stream {}", c.name);
    println!("  subjects      {}", c.subjects.join(", "));
    println!("  max age ms    {}", limit(c.max_age_ms));
    println!("  max bytes     {}", limit(c.max_bytes));
    println!("  max msgs      {}", limit(c.max_msgs));
    println!("  dedup window  {} ms", c.dedup_window_ms);
    println!("  messages      {} ({} bytes)", s.msgs, s.bytes);
    println!("  sequences     {}..={}", s.first_seq, s.last_seq);
}

pub async fn run(cmd: StreamCmd) -> anyhow::Result<()> {
    match cmd {
        StreamCmd::Add(a) => {
            let client = a.client.connect().await?;
            let info = client
                .create_stream(StreamConfig {
                    name: a.name,
                    subjects: a.subjects,
                    max_age_ms: a.max_age.unwrap_or(0),
                    max_bytes: a.max_bytes.unwrap_or(0),
                    max_msgs: a.max_msgs.unwrap_or(0),
                    dedup_window_ms: a.dedup_window.unwrap_or(0),
                })
                .await?;
            if a.client.json {
                println!("{}", info_json(&info));
            } else {
                print_info(&info);
            }
            client.close().await;
        }
        StreamCmd::Ls(c) => {
            let client = c.connect().await?;
            let streams = client.list_streams().await?;
            if c.json {
                for s in &streams {
                    println!("{}", info_json(s));
                }
            } else {
                println!(
                    "{:<24} {:<32} {:>12} {:>14}",
                    "STREAM", "SUBJECTS", "MESSAGES", "BYTES"
                );
                for s in &streams {
                    println!(
                        "{:<24} {:<32} {:>12} {:>14}",
                        s.config.name,
                        s.config.subjects.join(","),
                        s.state.msgs,
                        s.state.bytes
                    );
                }
            }
            client.close().await;
        }
        StreamCmd::Info { name, client: c } => {
            let client = c.connect().await?;
            let info = client.stream_info(&name).await?;
            if c.json {
                println!("{}", info_json(&info));
            } else {
                print_info(&info);
            }
            client.close().await;
        }
        StreamCmd::Rm { name, client: c } => {
            let client = c.connect().await?;
            client.delete_stream(&name).await?;
            if c.json {
                println!("{}", serde_json::json!({ "removed": name }));
            } else {
                println!("removed stream {name}");
            }
            client.close().await;
        }
    }
    Ok(())
}
