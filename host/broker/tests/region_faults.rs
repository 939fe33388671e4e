//! Faults injected into a region of three `tern serve` processes under load, checked with the
//! harness in tests/src/fault: producers publish through a client that knows every node
//! (and follows `not_leader` answers) while the leader is killed, paused or cut off, or the
//! whole region is killed, or a follower loses its storage. After healing, every node is
//! drained once its replicas agree, and the checker must find nothing acked lost, no id
//! stored twice, each key's acked messages in order, and all three nodes holding the same
//! stream. Each test prints its report with RTO (fault to the next acked publish started
//! after it) and acked publishes per second. The last test proves the checker fails a run
//! that lost acked data; the wiped follower catches up from a snapshot, its leader having
//! purged the log; `leader_kill_rto_20` (ignored, run with `--ignored`) measures
//! failover over 20 leader kills.
//!
//! Partitions use the region transport's test switch (`TERN_TEST_REGION_FAULTS`, see
//! tern-region's quic.rs): each node reads its own partition file, written by
//! [`Cluster::isolate`] and [`Cluster::heal`].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_client::{AckLevel, Client, ClientConfig, PubMessage, StreamConfig};
use tern_tests::fault::{check, drain, Cluster, History, Outcome, Probe, Report, Workload};
use tokio_util::sync::CancellationToken;

const TERN: &str = env!("CARGO_BIN_EXE_tern");
const STREAM: &str = "orders";
const NODES: usize = 3;
const DRAIN_WITHIN: Duration = Duration::from_secs(60);
/// A new leader is expected within a few election timeouts (450-810 ms each, by node id).
const LEADER_WITHIN: Duration = Duration::from_secs(15);
/// Replicas agree on the stream within this once writes stop (a wiped follower replays the
/// whole log).
const CONVERGE_WITHIN: Duration = Duration::from_secs(30);
/// No test runs longer than this, whatever hangs.
const TEST_WITHIN: Duration = Duration::from_secs(240);
/// Longer than twice the longest election timeout of the nodes (810 ms): the others elect
/// a new leader.
const LEADER_FAULT: Duration = Duration::from_secs(3);

async fn region() -> Cluster {
    let cluster = Cluster::start_region(Path::new(TERN), NODES).await;
    create_stream(&cluster).await;
    cluster
}

/// Creates the test stream, retrying until the region commits it.
async fn create_stream(cluster: &Cluster) {
    let config = StreamConfig {
        name: STREAM.into(),
        subjects: vec![format!("{STREAM}.>")],
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let created = match Client::connect(cluster.client_config()).await {
            Ok(c) => {
                let r = c.create_stream(config.clone()).await;
                c.close().await;
                r.map(|_| ())
            }
            Err(e) => Err(e),
        };
        match created {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("stream not created: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// One region at a time: each test runs three nodes, and two regions sharing two cores
/// would turn scheduling stalls into elections the test did not cause.
static ONE_REGION_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Fails the test instead of hanging it (the wait for another test's region is not counted).
async fn bounded<T>(test: impl std::future::Future<Output = T>) -> T {
    let _turn = ONE_REGION_AT_A_TIME.lock().await;
    tokio::time::timeout(TEST_WITHIN, test)
        .await
        .unwrap_or_else(|_| panic!("the test ran over {TEST_WITHIN:?}"))
}

/// Runs the workload while `faults` runs, then stops it, heals every partition, waits for
/// the replicas to agree, drains every node and checks.
async fn run_with(
    cluster: &mut Cluster,
    faults: impl AsyncFnOnce(&mut Cluster, &Arc<History>),
) -> Report {
    let cfg = cluster.client_config();
    run_with_config(cfg, cluster, faults).await
}

async fn run_with_config(
    cfg: ClientConfig,
    cluster: &mut Cluster,
    faults: impl AsyncFnOnce(&mut Cluster, &Arc<History>),
) -> Report {
    let history = Workload::new(STREAM)
        .run_around_with(cfg, cluster, faults)
        .await;
    check_nodes(cluster, &history).await
}

/// Heals, waits for the replicas to agree, drains every node and checks `history`.
async fn check_nodes(cluster: &Cluster, history: &History) -> Report {
    cluster.heal();
    if !cluster.wait_same_stream(STREAM, CONVERGE_WITHIN).await {
        println!("replicas did not agree within {CONVERGE_WITHIN:?}; checking anyway");
    }
    let mut nodes = BTreeMap::new();
    for (i, n) in cluster.nodes.iter().enumerate() {
        let content = drain(cluster.node_client_config(i), STREAM, DRAIN_WITHIN)
            .await
            .unwrap_or_else(|e| panic!("draining {}: {e}", n.name));
        nodes.insert(n.name.clone(), content);
    }
    let report = check(history, &nodes);
    println!("{report}");
    report
}

fn assert_correct(report: &Report) {
    assert!(report.is_valid(), "{report}");
    assert!(report.acked > 0, "{report}");
    assert!(
        report.rto_max().is_some(),
        "publishing recovered after every fault: {report}"
    );
}

/// The value at quantile `q` (nearest rank) of `v`.
fn quantile(v: &[Duration], q: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// `rounds` times: SIGKILL the leader, wait for the others to elect one, restart the killed
/// node and let it rejoin, so three nodes are up before the next kill. Returns the report
/// and, per kill, the time until a new leader acked a probe.
async fn kill_leader_rounds(rounds: usize) -> (Report, Vec<Duration>) {
    let mut cluster = region().await;
    let mut elections = Vec::new();
    // The producers use the client's defaults: RTO is what an application sees.
    let cfg = cluster.default_client_config();
    let report = run_with_config(
        cfg,
        &mut cluster,
        async |c: &mut Cluster, h: &Arc<History>| {
            for round in 0..rounds {
                let old = c.wait_leader(LEADER_WITHIN).await.expect("a leader");
                h.fault(format!(
                    "SIGKILL leader {} (kill #{round})",
                    c.nodes[old].name
                ));
                let killed_at = Instant::now();
                c.nodes[old].kill();
                let new = c
                    .wait_leader(LEADER_WITHIN)
                    .await
                    .expect("the survivors elect a leader");
                elections.push(killed_at.elapsed());
                assert_ne!(new, old);
                c.nodes[old].restart();
                c.wait_ready(old).await;
                tokio::time::sleep(Duration::from_millis(1_000)).await;
            }
        },
    )
    .await;
    (report, elections)
}

fn print_rto(report: &Report, elections: &[Duration]) {
    let rto: Vec<Duration> = report.rto.iter().filter_map(|(_, d)| *d).collect();
    let ms = |d: Duration| d.as_millis();
    println!(
        "RTO per kill (ms): {:?}",
        rto.iter().map(|d| ms(*d)).collect::<Vec<_>>()
    );
    println!(
        "new leader acked a probe after (ms): {:?}",
        elections.iter().map(|d| ms(*d)).collect::<Vec<_>>()
    );
    if !rto.is_empty() {
        println!(
            "RTO p50 {} ms, p99 {} ms, max {} ms over {} kills",
            ms(quantile(&rto, 0.5)),
            ms(quantile(&rto, 0.99)),
            ms(quantile(&rto, 1.0)),
            rto.len()
        );
    }
    if !elections.is_empty() {
        println!(
            "election p50 {} ms, p99 {} ms, max {} ms",
            ms(quantile(elections, 0.5)),
            ms(quantile(elections, 0.99)),
            ms(quantile(elections, 1.0))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_sigkill_repeated_under_load_loses_nothing_acked() {
    bounded(async {
        let (report, elections) = kill_leader_rounds(5).await;
        print_rto(&report, &elections);
        assert_correct(&report);
        assert_eq!(report.rto.len(), 5);
    })
    .await
}

/// A paused leader misses its heartbeats; the others elect a new one. Resumed, the old
/// leader must step down, and what it had accepted but not committed must not be acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_sigstop_steps_down_after_sigcont() {
    bounded(async {
        let mut cluster = region().await;
        let report = run_with(&mut cluster, async |c: &mut Cluster, h: &Arc<History>| {
            let old = c.wait_leader(LEADER_WITHIN).await.expect("a leader");
            h.fault(format!("SIGSTOP leader {}", c.nodes[old].name));
            let paused_at = Instant::now();
            c.nodes[old].pause();
            let new = c.wait_leader(LEADER_WITHIN).await;
            let elected_after = paused_at.elapsed();
            tokio::time::sleep(LEADER_FAULT.saturating_sub(paused_at.elapsed())).await;
            h.fault(format!("SIGCONT {}", c.nodes[old].name));
            c.nodes[old].resume();
            let resumed_at = Instant::now();
            let new = new.expect("the others elect a leader while it is paused");
            assert_ne!(new, old);
            println!(
                "new leader during the pause after {} ms",
                elected_after.as_millis()
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match c.probe(old).await {
                    Probe::Names(l) if l != old => break,
                    answer => assert!(
                        Instant::now() < deadline,
                        "the resumed leader did not step down: {answer:?}"
                    ),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            println!(
                "old leader refuses writes {} ms after SIGCONT",
                resumed_at.elapsed().as_millis()
            );
            tokio::time::sleep(Duration::from_millis(1_000)).await;
        })
        .await;
        assert_correct(&report);
    })
    .await
}

/// Whether a producer other than [`PINNED`] had a publish acked that completed after `from`.
fn majority_acked_since(h: &History, from: Duration) -> bool {
    h.ops().iter().any(|o| {
        o.producer != PINNED
            && matches!(o.outcome, Outcome::Ok { .. })
            && o.completed.is_some_and(|t| t > from)
    })
}

/// The producer number the client pinned to one node records its publishes under.
const PINNED: usize = 100;

/// Publishes to node `i` alone, one attempt each with a short timeout, recording each
/// publish in `history` as producer [`PINNED`] (ids `iso-<n>`, key `iso`), until `stop`.
fn publish_pinned(
    cluster: &Cluster,
    i: usize,
    history: Arc<History>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let mut cfg = cluster.node_client_config(i);
    cfg.publish_attempts_max = 1;
    cfg.request_timeout_ms = 500;
    tokio::spawn(async move {
        let Ok(client) = Client::connect(cfg).await else {
            return;
        };
        let mut n = 0u64;
        while !stop.is_cancelled() {
            n += 1;
            let id = format!("iso-{n}");
            let op = history.invoke(PINNED, &id, "iso", n);
            let msg = PubMessage {
                subject: format!("{STREAM}.iso"),
                id: Some(id),
                key: Some("iso".into()),
                headers: Vec::new(),
                payload: Bytes::from_static(b"isolated"),
            };
            let outcome = Outcome::of_publish(client.publish(msg, AckLevel::Quorum).await);
            history.complete(op, outcome);
        }
        client.close().await;
    })
}

/// The leader cut off from both followers keeps thinking it leads, but cannot commit: a
/// client pinned to it gets no ack, while the majority elects a new leader and keeps
/// acking. Healed, the old leader's uncommitted entries give way to the new leader's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_leader_never_acks_and_majority_continues() {
    bounded(async {
        let mut cluster = region().await;
        let mut history = None;
        let mut window = (Duration::ZERO, Duration::ZERO);
        let report = run_with(&mut cluster, async |c: &mut Cluster, h: &Arc<History>| {
            history = Some(h.clone());
            let old = c.wait_leader(LEADER_WITHIN).await.expect("a leader");
            let cut_at = Instant::now();
            c.isolate(old);
            // Each transport re-reads its partition file within 100 ms: publishes that
            // reach the leader before that may still commit. The partition counts from
            // then on, for RTO and for the client pinned to the old leader.
            tokio::time::sleep(Duration::from_millis(300)).await;
            h.fault(format!("partition isolating leader {}", c.nodes[old].name));
            let from = h.elapsed();
            let stop = CancellationToken::new();
            let pinned = publish_pinned(c, old, h.clone(), stop.clone());
            let new = c.wait_leader(LEADER_WITHIN).await;
            println!(
                "majority leader acked {} ms after the cut",
                cut_at.elapsed().as_millis()
            );
            // The cut lasts at least LEADER_FAULT, and until the majority has acked a
            // publish started after the cut (a loaded machine may take longer to elect).
            tokio::time::sleep(LEADER_FAULT.saturating_sub(cut_at.elapsed())).await;
            let acked_deadline = Instant::now() + LEADER_WITHIN;
            while !majority_acked_since(h, from) && Instant::now() < acked_deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            stop.cancel();
            pinned.await.expect("pinned publisher");
            window = (from, h.elapsed());
            let new = new.expect("the majority elects a leader");
            assert_ne!(new, old);
            h.fault("heal");
            c.heal();
            tokio::time::sleep(Duration::from_millis(1_500)).await;
        })
        .await;
        let ops = history.expect("the run").ops();
        let pinned: Vec<_> = ops.iter().filter(|o| o.producer == PINNED).collect();
        println!(
            "pinned to the isolated leader: {} publishes, outcomes {:?}",
            pinned.len(),
            pinned.iter().map(|o| &o.outcome).collect::<Vec<_>>()
        );
        assert!(!pinned.is_empty());
        assert!(
            pinned
                .iter()
                .all(|o| !matches!(o.outcome, Outcome::Ok { .. })),
            "the isolated leader acked a publish"
        );
        let majority_acks = ops
            .iter()
            .filter(|o| o.producer != PINNED && matches!(o.outcome, Outcome::Ok { .. }))
            .filter(|o| o.completed.is_some_and(|t| t > window.0 && t < window.1))
            .count();
        println!("the majority acked {majority_acks} publishes while the leader was cut off");
        assert!(
            majority_acks > 0,
            "the majority acked nothing during the partition"
        );
        assert_correct(&report);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_region_sigkill_and_restart_keeps_every_ack() {
    bounded(async {
        let mut cluster = region().await;
        let report = run_with(&mut cluster, async |c: &mut Cluster, h: &Arc<History>| {
            tokio::time::sleep(Duration::from_millis(1_000)).await;
            h.fault("SIGKILL every node");
            for n in &mut c.nodes {
                n.kill();
            }
            for n in &mut c.nodes {
                n.restart();
            }
            for i in 0..c.nodes.len() {
                c.wait_ready(i).await;
            }
            c.wait_leader(LEADER_WITHIN)
                .await
                .expect("the restarted region elects a leader");
            tokio::time::sleep(Duration::from_millis(1_000)).await;
        })
        .await;
        assert_correct(&report);
    })
    .await
}

/// A follower that lost its redb files and snapshots rejoins with nothing and catches up
/// from the leader's snapshot and the log after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_follower_catches_up_by_itself() {
    bounded(async {
        // Snapshots every few KiB of log: by the time the follower is wiped the leader's log
        // no longer starts at the beginning, so it catches up from a snapshot, then the log.
        let snapshots = "[cluster]\nsnapshot_log_bytes = 4096\nsnapshot_keep_entries = 10\n";
        let mut cluster = Cluster::start_region_with(Path::new(TERN), NODES, snapshots).await;
        create_stream(&cluster).await;
        let report = run_with(&mut cluster, async |c: &mut Cluster, h: &Arc<History>| {
            tokio::time::sleep(Duration::from_millis(2_000)).await;
            let leader = c.wait_leader(LEADER_WITHIN).await.expect("a leader");
            // The lowest-index follower: node n0 (the member that initialized the
            // region) unless it leads, so the wiped node also meets its bootstrap path.
            let f = (0..c.nodes.len())
                .find(|&i| i != leader)
                .expect("a follower");
            let purged = status_index(c, leader, "purged_index").await;
            assert!(purged.is_some(), "the leader purged none of its log");
            h.fault(format!("follower {} stopped and wiped", c.nodes[f].name));
            c.nodes[f].kill();
            c.nodes[f].wipe_storage();
            c.nodes[f].restart();
            c.wait_ready(f).await;
            tokio::time::sleep(Duration::from_millis(2_000)).await;
            let installed = status_index(c, f, "snapshot_index").await;
            assert!(
                installed >= purged,
                "the wiped follower holds no snapshot covering the purged log: {installed:?} < {purged:?}"
            );
        })
        .await;
        assert_correct(&report);
    })
    .await
}

/// An index field of node `i`'s `tern region status` (e.g. `purged_index`); `None` when
/// the node does not answer or the field is null.
async fn status_index(c: &Cluster, i: usize, field: &str) -> Option<u64> {
    let client = Client::connect(c.node_client_config(i)).await.ok()?;
    let json = client.region_status().await.ok()?;
    let status: serde_json::Value = serde_json::from_str(&json).ok()?;
    status.get(field)?.as_u64()
}

/// The harness is only worth something if it fails a broken run: wiping every node's
/// storage (losing acked data everywhere) must show up as lost messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_reports_acked_data_lost_by_the_region() {
    bounded(async {
        let mut cluster = region().await;
        let report = run_with(&mut cluster, async |c: &mut Cluster, h: &Arc<History>| {
            tokio::time::sleep(Duration::from_millis(500)).await;
            h.fault("every node killed and wiped");
            for n in &mut c.nodes {
                n.kill();
                n.wipe_storage();
            }
            for n in &mut c.nodes {
                n.restart();
            }
            for i in 0..c.nodes.len() {
                c.wait_ready(i).await;
            }
            create_stream(c).await;
        })
        .await;
        assert!(!report.is_valid());
        assert!(!report.lost.is_empty(), "{report}");
    })
    .await
}

/// 20 leader kills; prints RTO and election time p50/p99/max. A benchmark: run with
/// `cargo test --release -p tern-broker --test region_faults -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: about two minutes"]
async fn leader_kill_rto_20() {
    let (report, elections) = kill_leader_rounds(20).await;
    print_rto(&report, &elections);
    assert_correct(&report);
}

/// Longer than the shortest election timeout (450 ms by default), after which a follower
/// stops naming a leader it has not heard from.
const SILENT_LEADER_NAMED_FOR: Duration = Duration::from_millis(700);

/// While the region elects a leader, a follower asked to write holds its `not_leader`
/// answer until one is elected and names it: the client goes straight to the new leader
/// instead of trying members in turn. Here the follower cannot win alone (the leader is
/// dead and the other follower cut off) until the partition heals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_asked_mid_election_names_the_leader_elected() {
    bounded(async {
        let mut c = region().await;
        let dead = c.wait_leader(LEADER_WITHIN).await.expect("a leader");
        let followers: Vec<usize> = (0..NODES).filter(|i| *i != dead).collect();
        let (cut, asked) = (followers[0], followers[1]);
        c.nodes[dead].kill();
        c.isolate(cut);
        // Its lease on the dead leader lasts up to two election timeouts, but after the
        // shortest election timeout without a heartbeat `asked` stops naming it.
        tokio::time::sleep(SILENT_LEADER_NAMED_FOR).await;
        let probe = c.probe(asked).await;
        assert_ne!(
            probe,
            Probe::Names(dead),
            "node {asked} names a leader silent for {SILENT_LEADER_NAMED_FOR:?}"
        );
        let mut cfg = c.node_client_config(asked);
        cfg.publish_attempts_max = 1;
        cfg.request_timeout_ms = 10_000;
        let client = Client::connect(cfg).await.expect("connect");
        let msg = PubMessage {
            subject: format!("{STREAM}.mid-election"),
            id: None,
            key: None,
            headers: Vec::new(),
            payload: Bytes::from_static(b"x"),
        };
        let asked_at = Instant::now();
        let answer = tokio::spawn(async move {
            let r = client.publish(msg, AckLevel::Quorum).await;
            client.close().await;
            r
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.heal();
        let answer = answer.await.expect("publish task");
        println!(
            "answered after {} ms: {answer:?}",
            asked_at.elapsed().as_millis()
        );
        let named = match answer {
            Err(e) => e.leader_addr().map(str::to_owned),
            Ok(_) => panic!("node {asked} was not leading, yet acked"),
        };
        let survivors = [
            c.nodes[cut].addr.to_string(),
            c.nodes[asked].addr.to_string(),
        ];
        assert!(
            named.as_ref().is_some_and(|a| survivors.contains(a)),
            "the answer names {named:?}, not the leader elected among {survivors:?}"
        );
    })
    .await
}
