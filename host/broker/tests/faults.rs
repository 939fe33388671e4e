//! Faults injected into `tern serve` processes under load, checked with the harness in
//! tests/src/fault: nothing acked is lost, no id is stored twice, each key's acked messages
//! stay in order, and publishing recovers after each fault (RTO printed with the report).
//! A node is a region of one here; the same harness drives multi-node regions.
//! The last test proves the checker fails a run that lost acked data.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tern_client::{Client, StreamConfig};
use tern_tests::fault::{check, drain, Cluster, History, Report, Workload};

const TERN: &str = env!("CARGO_BIN_EXE_tern");
const STREAM: &str = "faults";
const DRAIN_WITHIN: Duration = Duration::from_secs(60);

async fn cluster() -> Cluster {
    let cluster = Cluster::start(Path::new(TERN), 1, |_| Vec::new()).await;
    create_stream(&cluster).await;
    cluster
}

async fn create_stream(cluster: &Cluster) {
    let client = Client::connect(cluster.client_config()).await.unwrap();
    client
        .create_stream(StreamConfig {
            name: STREAM.into(),
            subjects: vec![format!("{STREAM}.>")],
            ..Default::default()
        })
        .await
        .unwrap();
    client.close().await;
}

/// Runs the workload while `faults` runs, then stops it, drains every node and checks.
async fn run_with(
    cluster: &mut Cluster,
    faults: impl AsyncFnOnce(&mut Cluster, &Arc<History>),
) -> Report {
    let history = Workload::new(STREAM).run_around(cluster, faults).await;
    let mut nodes = BTreeMap::new();
    for (i, n) in cluster.nodes.iter().enumerate() {
        let content = drain(cluster.node_client_config(i), STREAM, DRAIN_WITHIN)
            .await
            .unwrap();
        nodes.insert(n.name.clone(), content);
    }
    let report = check(&history, &nodes);
    println!("{report}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_sigkill_under_load_loses_nothing_acked() {
    let mut cluster = cluster().await;
    let report = run_with(&mut cluster, async |c: &mut Cluster, h: &Arc<History>| {
        for round in 0..3 {
            h.fault(format!("SIGKILL #{round}"));
            c.nodes[0].kill();
            c.nodes[0].restart();
            c.wait_ready(0).await;
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
    })
    .await;
    assert!(report.is_valid(), "{report}");
    assert!(report.acked > 0, "{report}");
    assert!(
        report.rto_max().is_some(),
        "every kill was recovered from: {report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_then_sigcont_loses_nothing_acked() {
    let mut cluster = cluster().await;
    let report = run_with(&mut cluster, async |c: &mut Cluster, h: &Arc<History>| {
        h.fault("SIGSTOP for 2.5 s");
        c.nodes[0].pause();
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        c.nodes[0].resume();
        tokio::time::sleep(Duration::from_millis(1_000)).await;
    })
    .await;
    assert!(report.is_valid(), "{report}");
    assert!(report.rto_max().is_some(), "{report}");
}

/// The harness is only worth something if it fails a broken run: deleting the node's redb
/// file (losing acked data) must show up as lost messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_reports_acked_data_that_was_lost() {
    let mut cluster = cluster().await;
    let report = run_with(&mut cluster, async |c: &mut Cluster, h: &Arc<History>| {
        tokio::time::sleep(Duration::from_millis(300)).await;
        h.fault("SIGKILL and the redb file deleted");
        c.nodes[0].kill();
        c.nodes[0].wipe_storage();
        c.nodes[0].restart();
        c.wait_ready(0).await;
        create_stream(c).await;
    })
    .await;
    assert!(!report.is_valid());
    assert!(!report.lost.is_empty(), "{report}");
}
