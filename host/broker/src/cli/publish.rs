use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use serde::Deserialize;
use tern_client::{PubMessage, Receipt};

use super::common::{parse_header, Ack, ClientArgs};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub enum LineFormat {
    /// Each line is the payload.
    Text,
    /// Each line is `{"id", "key", "headers", "data"}` (all optional but data).
    Json,
}

#[derive(Args, Debug)]
pub struct PubArgs {
    /// Subject to publish to.
    subject: String,
    /// Payload (or use --file / --stdin).
    data: Option<String>,
    /// Read the payload from a file.
    #[arg(long, conflicts_with_all = ["data", "stdin"])]
    file: Option<PathBuf>,
    /// Message id (idempotency key); assigned when absent.
    #[arg(long, conflicts_with = "stdin")]
    id: Option<String>,
    /// Business key (per-key ordering).
    #[arg(long)]
    key: Option<String>,
    /// Header `name=value`; repeatable.
    #[arg(long = "header", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Durability to wait for before the ack.
    #[arg(long, value_enum, default_value = "local")]
    ack: Ack,
    /// Publish one message per input line.
    #[arg(long, conflicts_with = "data")]
    stdin: bool,
    /// How --stdin lines are read.
    #[arg(long, value_enum, default_value = "text", requires = "stdin")]
    line_format: LineFormat,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonLine {
    id: Option<String>,
    key: Option<String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    data: String,
}

fn print_receipt(r: &Receipt, json: bool, out: &mut impl Write) -> std::io::Result<()> {
    if json {
        let v = serde_json::json!({
            "id": r.id, "stream": r.stream, "seq": r.seq, "duplicate": r.duplicate,
        });
        writeln!(out, "{v}")
    } else {
        let dup = if r.duplicate { " (duplicate)" } else { "" };
        writeln!(
            out,
            "stored in {} at seq {} id {}{dup}",
            r.stream, r.seq, r.id
        )
    }
}

pub async fn run(a: PubArgs) -> anyhow::Result<()> {
    let client = a.client.connect().await?;
    let level = a.ack.level();
    let json = a.client.json;
    if !a.stdin {
        let payload = match (&a.data, &a.file) {
            (Some(d), None) => Bytes::from(d.clone().into_bytes()),
            (None, Some(f)) => {
                Bytes::from(std::fs::read(f).with_context(|| format!("reading {}", f.display()))?)
            }
            (None, None) => Bytes::new(),
            (Some(_), Some(_)) => bail!("give the payload as DATA or --file, not both"),
        };
        let msg = PubMessage {
            subject: a.subject.clone(),
            id: a.id.clone(),
            key: a.key.clone(),
            headers: a.headers.clone(),
            payload,
        };
        let r = client.publish(msg, level).await?;
        print_receipt(&r, json, &mut std::io::stdout().lock())?;
        client.close().await;
        return Ok(());
    }
    // One message per line, pipelined; acks are printed in input order once durable.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<anyhow::Result<String>>(1024);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let end = line.is_err();
            if tx.blocking_send(line.map_err(Into::into)).is_err() || end {
                break;
            }
        }
    });
    let mut pending = VecDeque::new();
    let mut out = std::io::stdout().lock();
    let mut line_no = 0u64;
    while let Some(line) = rx.recv().await {
        let line = line?;
        line_no += 1;
        let mut msg = PubMessage {
            subject: a.subject.clone(),
            id: None,
            key: a.key.clone(),
            headers: a.headers.clone(),
            payload: Bytes::new(),
        };
        match a.line_format {
            LineFormat::Text => msg.payload = Bytes::from(line.into_bytes()),
            LineFormat::Json => {
                let j: JsonLine = serde_json::from_str(&line)
                    .with_context(|| format!("line {line_no}: not a message object"))?;
                msg.id = j.id;
                if j.key.is_some() {
                    msg.key = j.key;
                }
                msg.headers.extend(j.headers);
                msg.payload = Bytes::from(j.data.into_bytes());
            }
        }
        pending.push_back(client.submit(msg, level).await?);
        // Print acks that are already in, keeping input order.
        while let Some(front) = pending.front_mut() {
            match futures_poll(front) {
                Some(r) => {
                    pending.pop_front();
                    print_receipt(&r?, json, &mut out)?;
                }
                None => break,
            }
        }
    }
    for p in pending {
        print_receipt(&p.await?, json, &mut out)?;
    }
    out.flush()?;
    client.close().await;
    Ok(())
}

/// Poll a future once without waiting.
fn futures_poll<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match std::pin::Pin::new(f).poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}
