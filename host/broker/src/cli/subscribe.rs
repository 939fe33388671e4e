use std::io::Write;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use tern_client::{Delivery, StartPosition, SubscribeOptions};

use super::common::{headers_json, payload_json, ClientArgs};

#[derive(Args, Debug)]
pub struct SubArgs {
    /// Subject filter (`*` one token, `>` the rest).
    subject: String,
    /// Durable consumer group to join; without it the subscription is ephemeral.
    #[arg(long)]
    group: Option<String>,
    /// Where to start: `start`, `new`, a sequence number, an RFC 3339 time, or a
    /// duration ago such as `15m`. For a group, only when it is first created.
    #[arg(long, default_value = "start", value_parser = parse_start)]
    from: StartPosition,
    /// Acknowledge each message after printing it (groups).
    #[arg(long)]
    ack: bool,
    /// Exit after this many messages.
    #[arg(long)]
    max: Option<u64>,
    /// Exit when no message arrives for this many seconds.
    #[arg(long)]
    idle_timeout: Option<f64>,
    /// Messages the node may push ahead of processing.
    #[arg(long, default_value_t = 1000)]
    window: u32,
    #[command(flatten)]
    client: ClientArgs,
}

fn parse_start(s: &str) -> Result<StartPosition, String> {
    match s {
        "start" => return Ok(StartPosition::Start),
        "new" => return Ok(StartPosition::New),
        _ => {}
    }
    if let Ok(seq) = s.parse::<u64>() {
        return Ok(StartPosition::Seq(seq));
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        let ms = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| format!("{s:?} is before 1970"))?
            .as_millis() as u64;
        return Ok(StartPosition::Time(ms));
    }
    if let Ok(ago) = humantime::parse_duration(s) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?;
        return Ok(StartPosition::Time(
            now.saturating_sub(ago).as_millis() as u64
        ));
    }
    Err(format!(
        "{s:?}: expected start, new, a sequence, an RFC 3339 time or a duration like 15m"
    ))
}

fn print(d: &Delivery, json: bool, out: &mut impl Write) -> std::io::Result<()> {
    if json {
        let v = serde_json::json!({
            "stream": d.stream,
            "seq": d.stamp.local_seq,
            "subject": d.subject,
            "id": d.id,
            "key": d.key,
            "headers": headers_json(&d.headers),
            "data": payload_json(&d.payload),
            "delivery_count": d.delivery_count,
            "time_ms": d.stamp.time_ms(),
            "origin": d.stamp.origin,
            "origin_seq": d.stamp.origin_seq,
            "key_seq": d.stamp.key_seq,
        });
        writeln!(out, "{v}")
    } else {
        writeln!(
            out,
            "[{} #{}] {}: {}",
            d.stream,
            d.stamp.local_seq,
            d.subject,
            String::from_utf8_lossy(&d.payload)
        )
    }
}

pub async fn run(a: SubArgs) -> anyhow::Result<()> {
    if a.ack && a.group.is_none() {
        bail!("--ack needs --group: ephemeral subscriptions are not acknowledged");
    }
    let client = a.client.connect().await?;
    let mut sub = client
        .subscribe(SubscribeOptions {
            subject: a.subject.clone(),
            group: a.group.clone(),
            start: a.from,
            window: a.window.max(1),
            ack_wait_ms: 0,
            max_deliveries: 0,
        })
        .await?;
    let mut out = std::io::stdout().lock();
    let mut seen = 0u64;
    let idle = a.idle_timeout.map(Duration::from_secs_f64);
    while a.max.is_none_or(|m| seen < m) {
        let next = match idle {
            Some(d) => match tokio::time::timeout(d, sub.next()).await {
                Ok(n) => n,
                Err(_) => break,
            },
            None => tokio::select! {
                n = sub.next() => n,
                _ = tokio::signal::ctrl_c() => break,
            },
        };
        let Some(d) = next else { break };
        let d = d?;
        print(&d, a.client.json, &mut out)?;
        out.flush()?;
        if a.ack {
            sub.ack(d.stamp.local_seq).await?;
        }
        seen += 1;
    }
    sub.close().await;
    client.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_positions() {
        assert_eq!(parse_start("start").unwrap(), StartPosition::Start);
        assert_eq!(parse_start("new").unwrap(), StartPosition::New);
        assert_eq!(parse_start("42").unwrap(), StartPosition::Seq(42));
        assert_eq!(
            parse_start("2026-01-01T00:00:00Z").unwrap(),
            StartPosition::Time(1_767_225_600_000)
        );
        assert!(matches!(
            parse_start("15m").unwrap(),
            StartPosition::Time(_)
        ));
        assert!(parse_start("yesterday-ish").is_err());
    }
}
