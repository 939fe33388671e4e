//! Seeded fault simulation of a three-node region: what a quorum acknowledged survives
//! partitions, crashes, message loss and delay, on every node, exactly once, in one order.
//!
//! Each seed drives one run on tokio's paused clock (virtual time: openraft's timers and
//! the router's delays cost no wall time). A `StdRng` seeded with the seed picks every step:
//! client writes (sent to a node that claims to lead, sometimes a stale one), isolating the
//! leader, healing, crashing a node (its Raft is shut down and dropped; it restarts on the
//! same redb file), cutting a node's power (the same, but every write it had not fsynced is
//! taken back first: see `tern_region::power_loss`), message delay and loss. Each write is
//! recorded as ok, fail (openraft said the entry is not in its log: never committed) or
//! unknown (timeout, crash). After the run everything is healed and restarted, and the
//! checks are:
//! - every node holds the same messages at the same positions (no divergence);
//! - every acknowledged write is there exactly once, at the positions its ack named;
//! - no failed write is there, nothing is there that no client wrote, nothing twice;
//! - a node cut off from the others for a write's whole life never acknowledged it.
//!
//! `TERN_SIM_VERBOSE=1` prints every step (virtual time, action, leaders, live nodes).
//!
//! A failure names its seed (`seed=N`); `TERN_SIM_SEED=N cargo test -p tern-region --test
//! sim` reruns that seed alone; `TERN_SIM_SEEDS=100..1000` runs a longer sweep. The seed
//! drives the fault schedule, the router's loss and delay, and openraft's election timeouts
//! (`tern_region::seed_thread_rng`); with virtual time and one thread, a seed replays the
//! same run, which `one_seed_replays_identically` checks. (tokio's `select!` branch order is
//! the one random source left unseeded; it needs tokio's unstable `rng_seed`.)

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Cluster, Outcome};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tern_region::{Command, NodeId, RegionConfig, Response};

const NODES: [NodeId; 3] = [1, 2, 3];
const STREAMS: [&str; 2] = ["orders", "audit"];
/// Steps of one run.
const STEPS: usize = 80;
/// The seeds every test run covers.
const SEEDS: std::ops::Range<u64> = 0..20;
/// A write gets this long (virtual time) to be acknowledged; then it is unknown.
const WRITE_WAIT: Duration = Duration::from_secs(3);
/// Bound on every wait for the region to settle after the faults stop.
const SETTLE_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Write {
    via: NodeId,
    stream: &'static str,
    msgs: Vec<Vec<u8>>,
    outcome: Outcome,
    /// `via` was isolated from before the write was sent until after it was answered.
    isolated_throughout: bool,
}

/// Which node is isolated, and a counter bumped by every isolate and heal, so a write can
/// tell whether one isolation lasted for its whole life.
#[derive(Default)]
struct Isolation {
    epoch: u64,
    node: Option<NodeId>,
}

#[derive(Default, Debug)]
struct Tally {
    ok: usize,
    fail: usize,
    unknown: usize,
    isolations: usize,
    crashes: usize,
    power_cuts: usize,
    /// Every write's outcome, in order: two runs of one seed should match.
    trace: String,
}

#[test]
fn seeded_faults_never_lose_or_duplicate_acknowledged_writes() {
    let seeds: Vec<u64> = if let Ok(s) = std::env::var("TERN_SIM_SEED") {
        vec![s.parse().expect("TERN_SIM_SEED is a number")]
    } else if let Ok(r) = std::env::var("TERN_SIM_SEEDS") {
        let (a, b) = r.split_once("..").expect("TERN_SIM_SEEDS is start..end");
        (a.parse().expect("start")..b.parse().expect("end")).collect()
    } else {
        SEEDS.collect()
    };
    // A hostile schedule can leave one seed without a single acknowledged write (the
    // leader cut off, then the majority short of a member); across seeds there must be many.
    let mut acked = 0;
    let many = seeds.len() > 1;
    for seed in seeds {
        eprintln!("sim seed={seed}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        match rt.block_on(run(seed)) {
            Ok(t) => {
                acked += t.ok;
                eprintln!("sim seed={seed} passed: {t:?}");
            }
            Err(e) => panic!("seed={seed}: {e}\nrerun with TERN_SIM_SEED={seed}"),
        }
    }
    assert!(
        acked > 0 || !many,
        "no write was acknowledged in any seed: the runs prove nothing"
    );
}

/// Runs seed 7 twice: every write must get the same outcome at the same positions.
#[test]
fn one_seed_replays_identically() {
    let once = || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        match rt.block_on(run(7)) {
            Ok(t) => t.trace,
            Err(e) => panic!("seed=7: {e}"),
        }
    };
    let first = once();
    assert!(!first.is_empty());
    assert_eq!(first, once(), "seed=7 did not replay identically");
}

async fn run(seed: u64) -> Result<Tally, String> {
    // What openraft draws at random (each node's timeout within its 1 ms range, as in
    // production: the timeouts themselves are fixed by node id) follows the seed too.
    tern_region::seed_thread_rng(seed);
    let mut rng = StdRng::seed_from_u64(seed);
    // Snapshot and purge often so installs and purges happen under faults too.
    let config = RegionConfig {
        snapshot_logs_since_last: 25,
        logs_kept_after_snapshot: 10,
        purge_batch_entries: 1,
        ..RegionConfig::default()
    };
    let mut c = Cluster::voters(&NODES, seed, config).await;
    let isolation = Arc::new(Mutex::new(Isolation::default()));
    let mut tally = Tally::default();
    let mut tasks = Vec::new();
    let mut crashed: Option<NodeId> = None;
    let mut next_msg = 0u64;
    let start = tokio::time::Instant::now();

    let verbose = std::env::var_os("TERN_SIM_VERBOSE").is_some();
    for step in 0..STEPS {
        let action = rng.random_range(0..100);
        if verbose {
            eprintln!(
                "step {step} t={:?} action={action} leaders={:?} live={:?} cut={:?}",
                start.elapsed(),
                c.claimed_leaders(),
                c.live.keys().collect::<Vec<_>>(),
                lock(&isolation).node,
            );
        }
        match action {
            0..50 => {
                let claimed = c.claimed_leaders();
                let live: Vec<NodeId> = c.live.keys().copied().collect();
                let pool = if claimed.is_empty() { &live } else { &claimed };
                let via = pool[rng.random_range(0..pool.len())];
                let stream = STREAMS[rng.random_range(0..STREAMS.len())];
                let n = rng.random_range(1..=3);
                let msgs: Vec<Vec<u8>> = (0..n)
                    .map(|_| {
                        next_msg += 1;
                        format!("s{seed}-m{next_msg}").into_bytes()
                    })
                    .collect();
                let cmd = Command::Append {
                    stream: stream.into(),
                    msgs: msgs.clone(),
                };
                let raft = c.raft(via).clone();
                let iso = isolation.clone();
                tasks.push(tokio::spawn(async move {
                    let before = isolated(&iso, via);
                    let outcome = common::write(raft, cmd, WRITE_WAIT).await;
                    let after = isolated(&iso, via);
                    Write {
                        via,
                        stream,
                        msgs,
                        outcome,
                        isolated_throughout: before.is_some() && before == after,
                    }
                }));
            }
            50..58 => {
                let mut iso = lock(&isolation);
                if iso.node.is_none() {
                    if let Some(&l) = c.claimed_leaders().first() {
                        c.router.isolate(l, NODES);
                        iso.node = Some(l);
                        iso.epoch += 1;
                        tally.isolations += 1;
                    }
                }
            }
            58..66 => {
                let mut iso = lock(&isolation);
                c.router.heal();
                iso.node = None;
                iso.epoch += 1;
            }
            66..72 => {
                if crashed.is_none() {
                    let id = NODES[rng.random_range(0..NODES.len())];
                    if rng.random_bool(0.5) {
                        c.crash(id).await;
                        tally.crashes += 1;
                    } else {
                        c.power_cut(id).await;
                        tally.power_cuts += 1;
                    }
                    crashed = Some(id);
                }
            }
            72..80 => {
                if let Some(id) = crashed.take() {
                    c.start(id).await;
                }
            }
            80..86 => c.router.set_delay_ms_max(rng.random_range(0..=150)),
            86..90 => c.router.set_drop_per_mille(rng.random_range(0..=200)),
            _ => tokio::time::sleep(Duration::from_millis(rng.random_range(10..=500))).await,
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..=100))).await;
    }

    // Stop the faults and bring everyone back.
    c.router.heal();
    c.router.set_drop_per_mille(0);
    c.router.set_delay_ms_max(0);
    {
        let mut iso = lock(&isolation);
        iso.node = None;
        iso.epoch += 1;
    }
    if let Some(id) = crashed.take() {
        c.start(id).await;
    }
    let mut writes = Vec::with_capacity(tasks.len());
    for t in tasks {
        // Each write already has its own deadline; this one only bounds a stuck task.
        match tokio::time::timeout(WRITE_WAIT * 2, t).await {
            Ok(Ok(w)) => writes.push(w),
            Ok(Err(e)) => return Err(format!("write task panicked: {e}")),
            Err(_) => return Err("write task outlived its deadline".into()),
        }
    }

    // A barrier write through the settled leader, then every node applies up to it.
    let mut settled = false;
    for _ in 0..10 {
        let barrier = Command::Put {
            key: "barrier".into(),
            value: seed.to_be_bytes().to_vec(),
        };
        if let Outcome::Ok(_) = c.write(barrier, WRITE_WAIT).await {
            settled = true;
            break;
        }
    }
    if !settled {
        return Err("no leader acknowledged the barrier write after healing".into());
    }
    if !c.converge(SETTLE_WAIT).await {
        return Err("nodes did not converge after healing".into());
    }

    let r = check(&c, &writes, &mut tally);
    tally.trace = writes
        .iter()
        .map(|w| match &w.outcome {
            Outcome::Ok(Response::Appended { positions }) => format!("ok{positions:?}"),
            Outcome::Ok(_) => "ok".into(),
            Outcome::Fail => "fail".into(),
            Outcome::Unknown => "unknown".into(),
        })
        .collect::<Vec<_>>()
        .join(",");
    c.shutdown().await;
    r.map(|()| tally)
}

fn lock(iso: &Mutex<Isolation>) -> std::sync::MutexGuard<'_, Isolation> {
    iso.lock().unwrap_or_else(|p| p.into_inner())
}

/// `Some(epoch)` if `via` is isolated now.
fn isolated(iso: &Mutex<Isolation>, via: NodeId) -> Option<u64> {
    let iso = lock(iso);
    (iso.node == Some(via)).then_some(iso.epoch)
}

fn check(c: &Cluster, writes: &[Write], tally: &mut Tally) -> Result<(), String> {
    for stream in STREAMS {
        // 1. No divergence: every node holds the same messages at the same positions.
        let base = c.stream(NODES[0], stream);
        for &id in &NODES[1..] {
            let other = c.stream(id, stream);
            if other != base {
                return Err(format!(
                    "stream {stream}: node {id} holds {} messages, node {} holds {}; they differ",
                    other.len(),
                    NODES[0],
                    base.len()
                ));
            }
        }
        // Positions are 1..=n with no gap.
        for (i, (pos, _)) in base.iter().enumerate() {
            if *pos != i as u64 + 1 {
                return Err(format!("stream {stream}: position {pos} at index {i}"));
            }
        }
        // Nothing twice.
        let mut seen = BTreeSet::new();
        for (pos, m) in &base {
            if !seen.insert(m.clone()) {
                return Err(format!(
                    "stream {stream}: {} stored twice (again at {pos})",
                    String::from_utf8_lossy(m)
                ));
            }
        }
    }

    let stored: BTreeMap<(&str, Vec<u8>), u64> = STREAMS
        .iter()
        .flat_map(|&s| {
            c.stream(NODES[0], s)
                .into_iter()
                .map(move |(pos, m)| ((s, m), pos))
        })
        .collect();
    let mut written = BTreeSet::new();
    for w in writes {
        for m in &w.msgs {
            written.insert((w.stream, m.clone()));
        }
        let at: Vec<Option<u64>> = w
            .msgs
            .iter()
            .map(|m| stored.get(&(w.stream, m.clone())).copied())
            .collect();
        match &w.outcome {
            Outcome::Ok(resp) => {
                tally.ok += 1;
                // 2. Acknowledged writes are present, exactly where the ack said.
                let Response::Appended { positions } = resp else {
                    return Err(format!("append answered {resp:?}"));
                };
                let want: Vec<Option<u64>> = positions.iter().map(|&p| Some(p)).collect();
                if at != want {
                    return Err(format!(
                        "acked write via node {} ({:?}) acked at {positions:?}, stored at {at:?}",
                        w.via,
                        String::from_utf8_lossy(&w.msgs[0])
                    ));
                }
                // 4. A node isolated for the whole write never acknowledges it.
                if w.isolated_throughout {
                    return Err(format!(
                        "node {} acknowledged a write while cut off from the majority",
                        w.via
                    ));
                }
            }
            Outcome::Fail => {
                tally.fail += 1;
                // 3. A write openraft dropped from its log is nowhere.
                if at.iter().any(Option::is_some) {
                    return Err(format!(
                        "failed write via node {} is stored at {at:?}",
                        w.via
                    ));
                }
            }
            Outcome::Unknown => {
                tally.unknown += 1;
                // Either all of the batch is stored, or none: one entry, one apply.
                if at.iter().any(Option::is_some) && at.iter().any(Option::is_none) {
                    return Err(format!("write via node {} is partly stored: {at:?}", w.via));
                }
            }
        }
    }
    // 3. Nothing stored that no client wrote.
    for key in stored.keys() {
        if !written.contains(&(key.0, key.1.clone())) {
            return Err(format!(
                "stream {} holds {} which nobody wrote",
                key.0,
                String::from_utf8_lossy(&key.1)
            ));
        }
    }
    Ok(())
}
