//! `tern bench`: load against a node through the client library, with a progress bar
//! while it runs and throughput plus latency percentiles (hdrhistogram) at the end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::{BufMut, Bytes, BytesMut};
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use tern_client::{Client, PubMessage, StartPosition, StreamConfig, SubscribeOptions};

use super::common::{Ack, ClientArgs};

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Publish as fast as acks allow (or at --rate) and report publish latency.
    Pub(BenchArgs),
    /// Consume a backlog (publish one first with `bench pub`).
    Sub(BenchArgs),
    /// Publish and consume at once; latency is end to end.
    Pubsub(BenchArgs),
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Payload bytes per message.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Messages in total (split across producers); ignored with --duration.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Run for this many seconds instead of a count.
    #[arg(long)]
    duration: Option<f64>,
    /// Concurrent producers, each with its own connection.
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Concurrent consumers, each with its own connection.
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Publishes in flight per producer (per-message mode).
    #[arg(long, default_value_t = 1000)]
    window: usize,
    /// Messages per batch call; 0 publishes one message per request, pipelined.
    #[arg(long, default_value_t = 0)]
    batch: usize,
    /// Target total publish rate in msg/s (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Give messages keys `k-0` .. `k-<N-1>` in turn (0: no keys), so that per-key versions
    /// are kept.
    #[arg(long, default_value_t = 0)]
    keys: u64,
    /// Stream to use (created if missing, bound to `<stream>.>`).
    #[arg(long, default_value = "bench")]
    stream: String,
    /// Consume as a consumer group with acks instead of an ephemeral subscription.
    #[arg(long)]
    group: Option<String>,
    /// Durability each publish waits for.
    #[arg(long, value_enum, default_value = "local")]
    ack: Ack,
    #[command(flatten)]
    client: ClientArgs,
}

struct Shared {
    done: AtomicU64,
    hist: std::sync::Mutex<Histogram<u64>>,
}

impl Shared {
    fn new() -> Arc<Shared> {
        Arc::new(Shared {
            done: AtomicU64::new(0),
            // 1 us .. 60 s, 3 significant digits.
            hist: std::sync::Mutex::new(
                Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            ),
        })
    }
    fn record(&self, h: &Histogram<u64>, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
        if let Ok(mut g) = self.hist.lock() {
            let _ = g.add(h);
        }
    }
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn payload(size: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(size.max(8));
    b.put_u64(now_us());
    b.resize(size.max(8), b'x');
    b.freeze()
}

fn progress(total: Option<u64>) -> ProgressBar {
    let pb = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::new_spinner(),
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {per_sec}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

pub async fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    let (kind, a) = match cmd {
        BenchCmd::Pub(a) => ("pub", a),
        BenchCmd::Sub(a) => ("sub", a),
        BenchCmd::Pubsub(a) => ("pubsub", a),
    };
    let admin = a.client.connect().await?;
    admin
        .create_stream(StreamConfig {
            name: a.stream.clone(),
            subjects: vec![format!("{}.>", a.stream)],
            ..Default::default()
        })
        .await
        .context("creating the bench stream")?;
    let deadline = a
        .duration
        .map(|d| Instant::now() + Duration::from_secs_f64(d));
    let total = if deadline.is_some() {
        None
    } else {
        Some(a.count)
    };
    let pb = progress(total);
    if a.client.json {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let pubs = Shared::new();
    let subs = Shared::new();
    let start = Instant::now();
    let mut tasks = Vec::new();
    if kind != "sub" {
        for p in 0..a.producers {
            let client = a.client.connect().await?;
            let (a2, s2) = (a.clone(), pubs.clone());
            let share = total
                .map(|t| t / a.producers as u64 + u64::from((p as u64) < t % a.producers as u64));
            // Only `pubsub` reads each payload's send time (end-to-end latency).
            let stamp_each = kind == "pubsub";
            tasks.push(tokio::spawn(async move {
                produce(client, a2, share, deadline, s2, p, stamp_each).await
            }));
        }
    }
    if kind != "pub" {
        for _ in 0..a.consumers {
            let client = a.client.connect().await?;
            let (a2, s2) = (a.clone(), subs.clone());
            let start_pos = if kind == "pubsub" {
                StartPosition::New
            } else {
                StartPosition::Start
            };
            let share = total.map(|t| {
                if a.group.is_some() {
                    t / a.consumers as u64
                } else {
                    t
                }
            });
            tasks.push(tokio::spawn(async move {
                consume(client, a2, share, deadline, s2, start_pos).await
            }));
        }
    }
    let counter = if kind == "sub" {
        subs.clone()
    } else {
        pubs.clone()
    };
    let watch_pb = pb.clone();
    let ticker = tokio::spawn(async move {
        loop {
            watch_pb.set_position(counter.done.load(Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    for t in tasks {
        t.await.context("bench task panicked")??;
    }
    ticker.abort();
    let elapsed = start.elapsed();
    pb.finish_and_clear();
    if kind != "sub" {
        report("publish", &a, &pubs, elapsed);
    }
    if kind != "pub" {
        report(
            if kind == "pubsub" {
                "end-to-end"
            } else {
                "consume"
            },
            &a,
            &subs,
            elapsed,
        );
    }
    admin.close().await;
    Ok(())
}

fn report(what: &str, a: &BenchArgs, s: &Shared, elapsed: Duration) {
    let n = s.done.load(Ordering::Relaxed);
    let h = s
        .hist
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| new_hist());
    let secs = elapsed.as_secs_f64().max(1e-9);
    let rate = n as f64 / secs;
    let mbps = rate * a.size as f64 / 1_048_576.0;
    let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    if a.client.json {
        let v = serde_json::json!({
            "what": what, "messages": n, "seconds": secs, "msgs_per_sec": rate, "mib_per_sec": mbps,
            "size": a.size, "producers": a.producers, "consumers": a.consumers,
            "window": a.window, "batch": a.batch, "rate": a.rate, "ack": a.ack.level().name(),
            "latency_ms": { "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999), "max": h.max() as f64 / 1000.0 },
        });
        println!("{v}");
    } else {
        println!(
            "{what}: {n} messages of {} B in {secs:.2} s = {rate:.0} msg/s ({mbps:.1} MiB/s)",
            a.size
        );
        println!(
            "  latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            h.max() as f64 / 1000.0
        );
    }
}

fn keep_going(sent: u64, share: Option<u64>, deadline: Option<Instant>) -> bool {
    match (share, deadline) {
        (_, Some(d)) => Instant::now() < d,
        (Some(s), None) => sent < s,
        (None, None) => false,
    }
}

async fn produce(
    client: Client,
    a: BenchArgs,
    share: Option<u64>,
    deadline: Option<Instant>,
    shared: Arc<Shared>,
    producer: usize,
    stamp_each: bool,
) -> anyhow::Result<()> {
    let subject = format!("{}.p{producer}", a.stream);
    let per_producer_rate = if a.rate > 0 {
        a.rate as f64 / a.producers as f64
    } else {
        0.0
    };
    let t0 = Instant::now();
    let mut sent = 0u64;
    let mut hist = new_hist();
    let keys = a.keys;
    let msg = |payload: Bytes, n: u64| PubMessage {
        subject: subject.clone(),
        id: None,
        key: (keys > 0).then(|| format!("k-{}", n % keys)),
        headers: Vec::new(),
        payload,
    };
    let pace = |sent: u64| async move {
        if per_producer_rate > 0.0 {
            let at = t0 + Duration::from_secs_f64(sent as f64 / per_producer_rate);
            tokio::time::sleep_until(at.into()).await;
        }
    };
    if a.batch > 0 {
        while keep_going(sent, share, deadline) {
            let n = share.map_or(a.batch as u64, |s| (s - sent).min(a.batch as u64));
            pace(sent).await;
            // The messages of a batch leave together, so they share one payload (and its
            // send time) instead of the generator writing a copy for each.
            let body = payload(a.size);
            let msgs: Vec<_> = (0..n).map(|i| msg(body.clone(), sent + i)).collect();
            let t = Instant::now();
            let results = client.publish_batch(msgs, a.ack.level()).await?;
            let us = t.elapsed().as_micros() as u64;
            for r in &results {
                if let Err(e) = r {
                    anyhow::bail!("publish failed: {} {}", e.code, e.message);
                }
            }
            let _ = hist.record_n(us.max(1), n);
            sent += n;
            shared.record(&hist, n);
            hist.reset();
        }
    } else {
        // A collector awaits acks in order as they complete, so latency is measured at
        // completion; the bounded channel is the in-flight window.
        let (tx, mut rx) =
            tokio::sync::mpsc::channel::<(Instant, tern_client::PendingAck)>(a.window.max(1));
        let collector_shared = shared.clone();
        let collector = tokio::spawn(async move {
            let mut hist = new_hist();
            let mut unreported = 0u64;
            let mut reported_at = Instant::now();
            while let Some((t, ack)) = rx.recv().await {
                ack.await?;
                let _ = hist.record((t.elapsed().as_micros() as u64).max(1));
                unreported += 1;
                // Merging a histogram walks all its buckets: do it rarely, off the ack path.
                if unreported >= 10_000 || reported_at.elapsed() > Duration::from_millis(200) {
                    collector_shared.record(&hist, unreported);
                    hist.reset();
                    unreported = 0;
                    reported_at = Instant::now();
                }
            }
            collector_shared.record(&hist, unreported);
            anyhow::Ok(())
        });
        // Without a consumer reading send times, every message shares one payload (a
        // reference count, as the messages of a batch do) instead of the generator
        // writing a fresh 1 KiB for each.
        let common = payload(a.size);
        while keep_going(sent, share, deadline) {
            pace(sent).await;
            let body = if stamp_each {
                payload(a.size)
            } else {
                common.clone()
            };
            let t = Instant::now();
            let ack = client.submit(msg(body, sent), a.ack.level()).await?;
            if tx.send((t, ack)).await.is_err() {
                break; // the collector failed; its error is reported below
            }
            sent += 1;
        }
        drop(tx);
        collector.await.context("ack collector panicked")??;
    }
    client.close().await;
    Ok(())
}

async fn consume(
    client: Client,
    a: BenchArgs,
    share: Option<u64>,
    deadline: Option<Instant>,
    shared: Arc<Shared>,
    start: StartPosition,
) -> anyhow::Result<()> {
    let mut sub = client
        .subscribe(SubscribeOptions {
            subject: format!("{}.>", a.stream),
            group: a.group.clone(),
            start,
            window: a.window.max(1) as u32,
            ack_wait_ms: 0,
            max_deliveries: 0,
        })
        .await?;
    let mut got = 0u64;
    let mut hist = new_hist();
    let mut unreported = 0u64;
    let idle = Duration::from_secs(5);
    while keep_going(got, share, deadline) {
        let d = match tokio::time::timeout(idle, sub.next()).await {
            Ok(Some(d)) => d?,
            Ok(None) => break,
            Err(_) => break, // nothing more is coming
        };
        if d.payload.len() >= 8 {
            let sent_us = u64::from_be_bytes(d.payload[..8].try_into().unwrap_or([0; 8]));
            let _ = hist.record(now_us().saturating_sub(sent_us).max(1));
        }
        if a.group.is_some() {
            sub.ack(d.stamp.local_seq).await?;
        }
        got += 1;
        unreported += 1;
        if unreported >= 10_000 {
            shared.record(&hist, unreported);
            hist.reset();
            unreported = 0;
        }
    }
    shared.record(&hist, unreported);
    sub.close().await;
    client.close().await;
    Ok(())
}
