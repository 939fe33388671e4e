//! Three region nodes over real QUIC on localhost, with mutual TLS from a test CA: they
//! elect a leader, replicate, and fail over when the leader stops, with every acknowledged
//! write on the survivors. A node whose certificate comes from another CA gets nothing.
//! Real sockets need the real clock, so waits are bounded polls; nothing asserts on timing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use tern_region::quic::{QuicTransport, RegionTls};
use tern_region::{
    start_on, Command, NodeAddr, NodeId, Raft, RaftRpc, RegionConfig, RegionStore, Response,
    StateReader, Transport,
};

const WAIT: Duration = Duration::from_secs(15);

/// A development region CA (its own each call), and a loopback certificate signed by it.
fn region_tls() -> RegionTls {
    let dir = tempfile::tempdir().expect("temp dir");
    let c = tern_net::region_dev_certs(dir.path()).expect("region certs");
    RegionTls {
        ca: c.ca,
        chain: c.chain,
        key: c.key,
    }
}

struct Node {
    raft: Raft,
    reader: StateReader,
    transport: Arc<QuicTransport>,
}

async fn start_nodes(dir: &std::path::Path, tls: &RegionTls) -> BTreeMap<NodeId, Node> {
    let config = RegionConfig::default().to_openraft(1).expect("config");
    let mut nodes = BTreeMap::new();
    for id in 1..=3u64 {
        let transport = Arc::new(
            QuicTransport::bind("127.0.0.1:0".parse().expect("addr"), &tls.clone()).expect("bind"),
        );
        let store = RegionStore::open(dir.join(format!("n{id}.redb"))).expect("store");
        let (raft, reader) = start_on(id, config.clone(), store, transport.clone())
            .await
            .expect("start");
        transport.serve(raft.clone());
        nodes.insert(
            id,
            Node {
                raft,
                reader,
                transport,
            },
        );
    }
    nodes
}

fn members(nodes: &BTreeMap<NodeId, Node>) -> BTreeMap<NodeId, NodeAddr> {
    nodes
        .iter()
        .map(|(&id, n)| {
            let a = n.transport.local_addr().expect("local addr");
            (id, NodeAddr::new(a.to_string()))
        })
        .collect()
}

async fn leader(nodes: &BTreeMap<NodeId, Node>) -> Option<NodeId> {
    for _ in 0..(WAIT.as_millis() / 50) {
        for (&id, n) in nodes {
            let m = n.raft.metrics().borrow().clone();
            if m.state == ServerState::Leader && m.current_leader == Some(id) {
                return Some(id);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// The positions an acknowledged append got, and its log index.
async fn append(raft: &Raft, msg: &str) -> (Vec<u64>, u64) {
    let cmd = Command::Append {
        stream: "s".into(),
        msgs: vec![msg.as_bytes().to_vec()],
    };
    match tokio::time::timeout(WAIT, raft.client_write(cmd)).await {
        Ok(Ok(r)) => match r.data {
            Response::Appended { positions } => (positions, r.log_id.index),
            other => panic!("append answered {other:?}"),
        },
        other => panic!("write {msg} not acknowledged: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_over_quic_replicates_and_fails_over() {
    let dir = tempfile::tempdir().expect("dir");
    let tls = region_tls();
    let mut nodes = start_nodes(dir.path(), &tls).await;
    nodes[&1]
        .raft
        .initialize(members(&nodes))
        .await
        .expect("initialize");

    let first = leader(&nodes).await.expect("no leader over QUIC");
    for i in 1..=5u64 {
        assert_eq!(
            append(&nodes[&first].raft, &format!("m{i}")).await.0,
            vec![i]
        );
    }

    let old = nodes.remove(&first).expect("leader node");
    old.raft.shutdown().await.expect("shutdown");
    old.transport.close();

    let second = leader(&nodes)
        .await
        .expect("no new leader after the leader stopped");
    assert_ne!(second, first);
    let (positions, applied) = append(&nodes[&second].raft, "m6").await;
    assert_eq!(positions, vec![6]);
    for (id, n) in &nodes {
        n.raft
            .wait(Some(WAIT))
            .applied_index_at_least(Some(applied), "caught up")
            .await
            .unwrap_or_else(|e| panic!("node {id} did not catch up: {e}"));
        let got: Vec<Vec<u8>> = n
            .reader
            .read_stream("s", 0, 100)
            .expect("read")
            .into_iter()
            .map(|(_, m)| m)
            .collect();
        let want: Vec<Vec<u8>> = (1..=6).map(|i| format!("m{i}").into_bytes()).collect();
        assert_eq!(got, want, "node {id}");
    }
    for n in nodes.values() {
        let _ = n.raft.shutdown().await;
        n.transport.close();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_from_another_ca_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let tls = region_tls();
    let nodes = start_nodes(dir.path(), &tls).await;
    let target = nodes[&1].transport.local_addr().expect("addr");

    // The rogue trusts the region's CA (so it accepts node 1's certificate) but its own
    // certificate comes from another CA: node 1 must refuse it.
    let other = region_tls();
    let rogue_tls = RegionTls {
        ca: tls.ca.clone(),
        chain: other.chain,
        key: other.key,
    };
    let rogue =
        QuicTransport::bind("127.0.0.1:0".parse().expect("addr"), &rogue_tls).expect("bind rogue");
    let rpc = RaftRpc::Vote(openraft::raft::VoteRequest {
        vote: openraft::Vote::new(100, 9),
        last_log_id: None,
    });
    let r = rogue
        .call(9, 1, &NodeAddr::new(target.to_string()), rpc)
        .await;
    assert!(
        r.is_err(),
        "a node outside the region CA got an answer: {r:?}"
    );
    // And it did not move anyone's term.
    assert!(nodes[&1].raft.metrics().borrow().current_term < 100);
    for n in nodes.values() {
        let _ = n.raft.shutdown().await;
        n.transport.close();
    }
}
