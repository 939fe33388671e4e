//! A region of three nodes in this process, on loopback, each with its own redb files and
//! a shared development region CA: writes reach every member through the log, followers
//! send clients to the leader, and a consumer group continues on a new leader exactly
//! where it was.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use tern_broker::LinkConfig;
use tern_client::{
    AckLevel, Client, ClientConfig, ClientError, ErrorCode, PubMessage, StartPosition,
    StreamConfig, SubscribeOptions,
};
use tern_store::StoredMessage;
use tern_tests::{eventually, free_loopback_addr, next_delivery, TestNode};

const WAIT: Duration = Duration::from_secs(20);

struct Region {
    nodes: Vec<Option<TestNode>>,
    servers: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Region {
    async fn start() -> Region {
        Region::start_with(|_| {}).await
    }

    /// A region whose members' configs are adjusted by `adjust` after the region settings.
    async fn start_with(
        adjust: impl Fn(&mut tern_broker::Config) + Clone + Send + 'static,
    ) -> Region {
        let dir = tempfile::tempdir().unwrap();
        let client: Vec<_> = (0..3).map(|_| free_loopback_addr()).collect();
        let raft: Vec<_> = (0..3).map(|_| free_loopback_addr()).collect();
        let peers: Vec<String> = (0..3)
            .map(|i| format!("{}={}/{}", i + 1, raft[i], client[i]))
            .collect();
        let mut starting = Vec::new();
        for i in 0..3 {
            let (peers, ca) = (peers.clone(), dir.path().join("ca"));
            let data = dir.path().join(format!("n{i}"));
            let (listen, region_listen) = (client[i], raft[i]);
            let adjust = adjust.clone();
            starting.push(tokio::spawn(TestNode::start_in(data, move |c| {
                c.listen = listen;
                c.region = "eu".into();
                c.cluster.node_id = i as u64 + 1;
                c.cluster.peers = peers;
                c.cluster.listen = region_listen;
                c.cluster.ca_dir = Some(ca);
                adjust(c);
            })));
        }
        let mut nodes = Vec::new();
        for s in starting {
            nodes.push(Some(s.await.unwrap()));
        }
        Region {
            nodes,
            servers: client.iter().map(|a| a.to_string()).collect(),
            _dir: dir,
        }
    }

    /// Stops every running member.
    async fn stop(self) {
        for n in self.nodes.into_iter().flatten() {
            n.stop().await;
        }
    }

    fn node(&self, i: usize) -> &TestNode {
        self.nodes[i].as_ref().expect("node is running")
    }

    /// What each running member says of the region, for a failure's message: role, the
    /// leader it knows, term, last log index and commit index.
    async fn describe(&self) -> String {
        let mut out = Vec::new();
        for n in self.nodes.iter().flatten() {
            out.push(match n.node().region_status().await {
                Some(s) => format!(
                    "member {}: {} leader {:?} term {} log {:?} committed {:?}",
                    s.node_id, s.state, s.leader, s.term, s.last_log_index, s.commit_index
                ),
                None => "a member without a region status".to_string(),
            });
        }
        out.join("; ")
    }

    /// The index of the running member every running member names as leader.
    async fn leader(&self) -> usize {
        let agreed = eventually(200, Duration::from_millis(100), || async {
            let mut leaders = Vec::new();
            for n in self.nodes.iter().flatten() {
                leaders.push(n.node().region_status().await?.leader?);
            }
            let first = *leaders.first()?;
            let running = self.nodes.iter().flatten().count();
            let index = first as usize - 1;
            let alive = self.nodes.get(index).is_some_and(Option::is_some);
            (alive && leaders.len() == running && leaders.iter().all(|&l| l == first))
                .then_some(index)
        })
        .await;
        match agreed {
            Some(leader) => leader,
            None => panic!(
                "the running members do not agree on a leader: {}",
                self.describe().await
            ),
        }
    }

    /// A client that knows the given members, in that order.
    async fn client(&self, members: &[usize]) -> Client {
        let servers = members.iter().map(|&i| self.servers[i].clone()).collect();
        let ca = self.nodes.iter().flatten().next().unwrap().ca();
        let mut c = ClientConfig::new(servers, ca);
        c.connect_timeout_ms = 2_000;
        c.request_timeout_ms = 5_000;
        Client::connect(c).await.expect("client connects")
    }
}

fn msg(i: usize) -> PubMessage {
    PubMessage {
        subject: format!("orders.{}", i % 3),
        id: Some(format!("order-{i}")),
        key: Some(format!("customer-{}", i % 5)),
        payload: Bytes::from(format!("order {i}")),
        ..Default::default()
    }
}

/// Each message of `orders` on `node` as `pick` takes it, once it holds `n` (or what it
/// holds after the wait).
async fn stored_on<T>(node: &TestNode, n: u64, pick: impl Fn(StoredMessage) -> T) -> Vec<T> {
    let read = || {
        node.node()
            .store()
            .read("orders", 1, 10_000, usize::MAX)
            .unwrap_or_default()
    };
    let got = eventually(200, Duration::from_millis(50), || async {
        let v = read();
        (v.len() as u64 == n).then_some(v)
    })
    .await;
    got.unwrap_or_else(read).into_iter().map(pick).collect()
}

/// What every member must agree on: (local seq, id, key_seq, hlc) of each message.
async fn stream_on(node: &TestNode, n: u64) -> Vec<(u64, String, u64, u64)> {
    stored_on(node, n, |m| (m.seq, m.id, m.key_seq, m.hlc)).await
}

/// Publishes orders 0..n in one batch at quorum.
async fn publish_orders(client: &Client, n: usize) {
    let batch: Vec<PubMessage> = (0..n).map(msg).collect();
    for r in client.publish_batch(batch, AckLevel::Quorum).await.unwrap() {
        r.unwrap();
    }
}

async fn create_stream(client: &Client) {
    client
        .create_stream(StreamConfig {
            name: "orders".into(),
            subjects: vec!["orders.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
}

fn no_leader_data_left(dir: &Path) {
    assert!(
        dir.join("region.redb").exists(),
        "the log file is next to the store"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_reach_every_member_and_followers_send_clients_to_the_leader() {
    let region = Region::start().await;
    let leader = region.leader().await;
    let follower = (leader + 1) % 3;
    // The follower comes first: its `not_leader` answer moves the client to the leader.
    let client = region.client(&[follower, leader]).await;
    create_stream(&client).await;
    for i in 0..60 {
        let r = client.publish(msg(i), AckLevel::Local).await.unwrap();
        assert_eq!(r.seq, i as u64 + 1);
        assert_eq!(r.level, AckLevel::Quorum, "a region acks at quorum");
    }
    let retry = client.publish(msg(7), AckLevel::Quorum).await.unwrap();
    assert!(retry.duplicate && retry.seq == 8, "{retry:?}");

    // Same messages, same order, same stamps on every member.
    let on_leader = stream_on(region.node(leader), 60).await;
    for i in 0..3 {
        assert_eq!(stream_on(region.node(i), 60).await, on_leader, "member {i}");
        no_leader_data_left(&region.node(i).config.data_dir);
    }
    let key_seqs: Vec<u64> = on_leader.iter().map(|m| m.2).collect();
    assert_eq!(key_seqs[..10], [1, 1, 1, 1, 1, 2, 2, 2, 2, 2]);

    // Ack level `leader`: answered at the leader's fsync, without a position (or, if the
    // commit came first, at quorum with one); the messages are then committed like any.
    let batch: Vec<PubMessage> = (60..70).map(msg).collect();
    let mut at_leader = 0;
    for r in client.publish_batch(batch, AckLevel::Leader).await.unwrap() {
        let r = r.unwrap();
        assert_eq!(r.stream, "orders");
        match r.level {
            AckLevel::Leader => {
                assert_eq!((r.seq, r.duplicate), (0, false));
                at_leader += 1;
            }
            level => assert_eq!(level, AckLevel::Quorum, "{r:?}"),
        }
    }
    println!("{at_leader} of 10 acked at level leader");
    // A retry at level leader is still deduplicated when it is committed.
    client.publish(msg(65), AckLevel::Leader).await.unwrap();
    client.publish(msg(70), AckLevel::Quorum).await.unwrap();
    let on_leader = stream_on(region.node(leader), 71).await;
    let ids: Vec<&str> = on_leader[60..].iter().map(|m| m.1.as_str()).collect();
    let want: Vec<String> = (60..=70).map(|i| format!("order-{i}")).collect();
    assert_eq!(ids, want);

    // A reader may use any member.
    let reader = region.client(&[follower]).await;
    let mut sub = reader
        .subscribe(SubscribeOptions::new("orders.>").start(StartPosition::Start))
        .await
        .unwrap();
    let first = next_delivery(&mut sub, WAIT).await;
    assert_eq!(first.id, "order-0");
    region.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_group_continues_on_the_new_leader_where_it_was() {
    tern_tests::log_to_test_output();
    let mut region = Region::start().await;
    let leader = region.leader().await;
    let client = region.client(&[0, 1, 2]).await;
    create_stream(&client).await;
    publish_orders(&client, 50).await;
    let mut sub = client
        .subscribe(SubscribeOptions::new("orders.>").group("billing"))
        .await
        .unwrap();
    for expected in 1..=20u64 {
        let d = next_delivery(&mut sub, WAIT).await;
        assert_eq!(d.stamp.local_seq, expected);
        sub.ack(expected).await.unwrap();
    }
    sub.close().await;
    client.close().await;
    // The acks reach every member through the log: the members agree on the stored cursor.
    // (Acks are sent without waiting for an answer; the cursor is the node's record of those
    // that arrived, at most 21.)
    let cursors = || -> Vec<Option<u64>> {
        (0..3)
            .map(|i| {
                let store = region.node(i).node().store().clone();
                store.group_cursor("orders", "billing").ok().flatten()
            })
            .collect()
    };
    let cursor = eventually(200, Duration::from_millis(50), || async {
        let cursors = cursors();
        let first = cursors[0].filter(|&c| c > 1)?;
        cursors.iter().all(|&c| c == Some(first)).then_some(first)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the members disagree on the group's cursor: {:?}",
            cursors()
        )
    });
    assert!(cursor <= 21, "cursor {cursor}");

    region.nodes[leader].take().unwrap().stop().await;
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new_leader = region.leader().await;
    assert_ne!(new_leader, leader);
    let client = region.client(&others).await;
    let mut sub = client
        .subscribe(SubscribeOptions::new("orders.>").group("billing"))
        .await
        .unwrap();
    let d = next_delivery(&mut sub, WAIT).await;
    assert_eq!(
        d.stamp.local_seq, cursor,
        "the group resumes at its replicated cursor"
    );
    // The two members left still take writes: a quorum of two.
    let r = client.publish(msg(1000), AckLevel::Quorum).await.unwrap();
    assert_eq!((r.seq, r.level), (51, AckLevel::Quorum));
    sub.close().await;
    region.stop().await;
}

/// With snapshots every 2 KiB of log the leader's log no longer starts at the beginning, so a
/// member whose data was deleted can only catch up by receiving a snapshot of the store and
/// then the log after it. It ends with the same messages, stamps, dedup index and consumer
/// group cursor as the others, and keeps replicating.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_member_catches_up_from_a_snapshot_once_the_log_is_purged() {
    let mut region = Region::start_with(|c| {
        c.cluster.snapshot_log_bytes = 2048;
        c.cluster.snapshot_keep_entries = 5;
    })
    .await;
    move_leadership_away_from(&mut region, 0).await;
    let leader = region.leader().await;
    let client = region.client(&[0, 1, 2]).await;
    create_stream(&client).await;
    // One entry per publish: far more entries than a snapshot interval.
    for i in 0..120 {
        client.publish(msg(i), AckLevel::Quorum).await.unwrap();
    }
    let mut sub = client
        .subscribe(SubscribeOptions::new("orders.>").group("billing"))
        .await
        .unwrap();
    for expected in 1..=10u64 {
        let d = next_delivery(&mut sub, WAIT).await;
        sub.ack(d.stamp.local_seq).await.unwrap();
        assert_eq!(d.stamp.local_seq, expected);
    }
    sub.close().await;
    // Snapshots are checked for every second.
    let status = eventually(100, Duration::from_millis(100), || async {
        let s = region.node(leader).node().region_status().await?;
        s.purged_index.is_some().then_some(s)
    })
    .await
    .expect("the leader snapshots and purges its log");
    let purged = status.purged_index.unwrap();
    assert!(status.snapshot_index.unwrap() >= purged, "{status:?}");

    // Node 1 (the member that initializes a new region) loses everything and restarts on
    // the same addresses: it must rejoin the region, not start another.
    let wiped = 0;
    let node = region.nodes[wiped].take().unwrap();
    let config = node.config.clone();
    node.stop().await;
    wait_for_socket(config.cluster.listen).await;
    std::fs::remove_dir_all(&config.data_dir).unwrap();
    let data = config.data_dir.clone();
    region.nodes[wiped] = Some(TestNode::start_in(data, move |c| *c = config).await);

    let on_leader = stream_on(region.node(leader), 120).await;
    assert_eq!(stream_on(region.node(wiped), 120).await, on_leader);
    let installed = eventually(200, Duration::from_millis(50), || async {
        let s = region.node(wiped).node().region_status().await?;
        s.snapshot_index
    })
    .await;
    assert!(
        installed.is_some_and(|i| i >= purged),
        "the wiped member has no snapshot: {installed:?}"
    );
    let cursors = eventually(200, Duration::from_millis(50), || async {
        let c: Vec<_> = [leader, wiped]
            .iter()
            .map(|&i| {
                region
                    .node(i)
                    .node()
                    .store()
                    .group_cursor("orders", "billing")
                    .unwrap()
            })
            .collect();
        (c[0].is_some() && c[0] == c[1]).then_some(c)
    })
    .await;
    assert!(cursors.is_some(), "the group cursor came with the snapshot");

    // Replication continues after the snapshot: a publish reaches the wiped member too.
    let r = client.publish(msg(500), AckLevel::Quorum).await.unwrap();
    assert_eq!(r.seq, 121);
    let on_leader = stream_on(region.node(leader), 121).await;
    assert_eq!(stream_on(region.node(wiped), 121).await, on_leader);
    client.close().await;
    region.stop().await;
}

/// The stored cursor of group "billing" when every member agrees on `want`.
async fn cursors_agree(region: &Region, want: u64) {
    let cursors = || -> Vec<Option<u64>> {
        region
            .nodes
            .iter()
            .flatten()
            .map(|n| n.node().store().group_cursor("orders", "billing").unwrap())
            .collect()
    };
    let agreed = eventually(200, Duration::from_millis(50), || async {
        cursors().iter().all(|&c| c == Some(want)).then_some(())
    })
    .await;
    assert!(agreed.is_some(), "cursors {:?}, want {want}", cursors());
}

/// Makes member `i` the leader by having it campaign until every member names it.
///
/// A first campaign only deposes the leader (leases refuse it the votes), and in the
/// election that follows the deposed leader, whose timer fires about when `i`'s does,
/// often won; so `i` campaigns a second time as soon as the leader has stepped down. That
/// wins unless an entry reached the others while `i` refused the old leader's appends
/// (the caller keeps the log still: no retention purges). It tries again a bounded number
/// of times, each time only once it holds the leader's whole log (a campaign from a
/// shorter log cannot win) and once the election it set off has ended.
async fn move_leadership_to(region: &Region, i: usize) {
    const CAMPAIGNS: usize = 20;
    for n in 0..CAMPAIGNS {
        let leader = region.leader().await;
        if leader == i {
            println!("member {i} leads after {n} rounds of campaigns");
            return;
        }
        let caught_up = eventually(100, Duration::from_millis(100), || async {
            let me = region.node(i).node().region_status().await?;
            let them = region.node(leader).node().region_status().await?;
            (me.leader == Some(leader as u64 + 1) && me.last_log_index >= them.last_log_index)
                .then_some(())
        })
        .await;
        if caught_up.is_none() {
            break;
        }
        let campaign = || async {
            if let Some(region_node) = region.node(i).node().region() {
                let _ = region_node.campaign().await;
            }
        };
        campaign().await;
        // The leader steps down once it meets the higher term. Campaigning again at once,
        // before the deposed leader's own timer fires, wins: it no longer follows an
        // elected leader, so no lease holds its vote back.
        let stepped_down = eventually(50, Duration::from_millis(20), || async {
            let them = region.node(leader).node().region_status().await?;
            (them.state != "leader").then_some(())
        })
        .await;
        if stepped_down.is_some() {
            campaign().await;
        }
        // `leader()` then waits until the members agree again.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if region.leader().await == i {
        return;
    }
    panic!(
        "member {i} did not become the leader: {}",
        region.describe().await
    );
}

/// Makes a member other than `from` the leader, and `from` a follower: a leading `from` is
/// stopped until the others agree on a leader among themselves, then started again on its
/// data.
/// The new leader's first entry is missing from its log, so it cannot win an election and
/// rejoins as a follower. (Campaigns from the others could lose to `from` again and again.)
async fn move_leadership_away_from(region: &mut Region, from: usize) {
    // Every member follows a leader first: a new region's other members know nothing
    // until its first member has sent them the membership.
    if region.leader().await != from {
        return;
    }
    let node = region.nodes[from].take().expect("node is running");
    let config = node.config.clone();
    node.stop().await;
    let leader = region.leader().await;
    wait_for_socket(config.cluster.listen).await;
    let data = config.data_dir.clone();
    region.nodes[from] = Some(TestNode::start_in(data, move |c| *c = config).await);
    let agreed = region.leader().await;
    if agreed == from {
        panic!(
            "member {from} leads again after member {leader} did: {}",
            region.describe().await
        );
    }
}

/// Waits until a stopped node's region endpoint has let go of its UDP socket, which it
/// does once its last connection has drained.
async fn wait_for_socket(addr: std::net::SocketAddr) {
    let freed = eventually(200, Duration::from_millis(50), || async {
        std::net::UdpSocket::bind(addr).ok().map(drop)
    })
    .await;
    assert!(freed.is_some(), "the stopped node still holds {addr}");
}

/// Consumes and acks `range` as group "billing", then closes the subscription.
async fn consume_and_ack(client: &Client, range: std::ops::RangeInclusive<u64>) {
    let mut sub = client
        .subscribe(SubscribeOptions::new("orders.>").group("billing"))
        .await
        .unwrap();
    for expected in range {
        let d = next_delivery(&mut sub, WAIT).await;
        assert_eq!(d.stamp.local_seq, expected);
        sub.ack(expected).await.unwrap();
    }
    sub.close().await;
}

/// What a node keeps in memory about a group is good only while it leads: when leadership
/// leaves it, the group moves on at the new leader, and leadership comes back, the group goes
/// on from its replicated cursor and does not deliver again what was acked elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_goes_on_from_its_replicated_cursor_when_leadership_comes_back() {
    // No retention purges: each is a log entry, and one that a campaigning member misses
    // while it refuses the old leader's appends keeps it from winning.
    let region = Region::start_with(|c| c.storage.purge_interval_ms = 3_600_000).await;
    let first = region.leader().await;
    let client = region.client(&[0, 1, 2]).await;
    create_stream(&client).await;
    publish_orders(&client, 40).await;
    consume_and_ack(&client, 1..=10).await;
    cursors_agree(&region, 11).await;

    let second = (first + 1) % 3;
    move_leadership_to(&region, second).await;
    consume_and_ack(&client, 11..=20).await;
    cursors_agree(&region, 21).await;

    move_leadership_to(&region, first).await;
    consume_and_ack(&client, 21..=25).await;
    cursors_agree(&region, 26).await;
    client.close().await;
    region.stop().await;
}

/// Ack level `leader` is answered once the leader's own log has the entry, before a
/// majority does: with both followers stopped the leader still answers it (that message is
/// what the level risks losing), while a quorum publish gets no ack. Once no majority has
/// acknowledged the leader for an election timeout, it refuses writes with `not_leader`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ack_level_leader_is_answered_before_a_majority_has_the_message() {
    // A long election timeout: the leader keeps leading alone for a while after the stop.
    let mut region = Region::start_with(|c| {
        c.cluster.election_timeout_ms_min = 3_000;
        c.cluster.election_timeout_ms_max = 6_000;
    })
    .await;
    let leader = region.leader().await;
    let mut config = ClientConfig::new(
        vec![region.servers[leader].clone()],
        region.node(leader).ca(),
    );
    config.publish_attempts_max = 1;
    config.request_timeout_ms = 1_000;
    let client = Client::connect(config).await.unwrap();
    create_stream(&client).await;
    let followers: Vec<TestNode> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| region.nodes[i].take().unwrap())
        .collect();
    let stopped = std::time::Instant::now();
    let mut stops = Vec::new();
    for f in followers {
        stops.push(tokio::spawn(f.stop()));
    }
    for s in stops {
        s.await.unwrap();
    }
    let r = client.publish(msg(1), AckLevel::Leader).await.unwrap();
    assert_eq!(
        (
            r.id.as_str(),
            r.stream.as_str(),
            r.seq,
            r.duplicate,
            r.level
        ),
        ("order-1", "orders", 0, false, AckLevel::Leader),
        "answered {} ms after the stop",
        stopped.elapsed().as_millis()
    );
    let quorum = client.publish(msg(2), AckLevel::Quorum).await;
    assert!(quorum.is_err(), "{quorum:?}");
    let refused = eventually(100, Duration::from_millis(100), || async {
        match client.publish(msg(3), AckLevel::Leader).await {
            Err(ClientError::Server(e)) if e.code == ErrorCode::NotLeader => Some(()),
            _ => None,
        }
    })
    .await;
    assert!(refused.is_some(), "the leader kept taking writes alone");
    client.close().await;
    region.stop().await;
}

/// A link with `region` that copies `orders` from it when its address and CA are given.
fn link_from(region: &str, addr: Option<String>, ca: Option<std::path::PathBuf>) -> LinkConfig {
    LinkConfig {
        region: region.into(),
        tags: Vec::new(),
        nodes: addr.into_iter().collect(),
        streams: if ca.is_some() {
            vec!["orders".into()]
        } else {
            Vec::new()
        },
        ca,
    }
}

/// Copies from another region: (local seq, id, origin, origin_seq) of each message.
async fn copies_on(node: &TestNode, n: u64) -> Vec<(u64, String, String, u64)> {
    stored_on(node, n, |m| (m.seq, m.id, m.origin, m.origin_seq)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_region_copies_another_regions_stream_through_its_log() {
    let ap = TestNode::start_with(|c| {
        c.region = "ap".into();
        c.mesh.links = vec![link_from("eu", None, None)];
    })
    .await;
    let (addr, ca) = (ap.addr(), ap.ca());
    let mut region = Region::start_with(move |c| {
        c.mesh.links = vec![link_from("ap", Some(addr.clone()), Some(ca.clone()))];
        c.mesh.backoff_initial_ms = 20;
        c.mesh.backoff_max_ms = 200;
    })
    .await;
    let leader = region.leader().await;
    let client = region.client(&[leader]).await;
    create_stream(&client).await;
    client.close().await;
    let ap_client = ap.client().await;
    create_stream(&ap_client).await;
    publish_orders(&ap_client, 30).await;

    let want = |n: usize| -> Vec<(u64, String, String, u64)> {
        (0..n)
            .map(|i| {
                (
                    i as u64 + 1,
                    format!("order-{i}"),
                    "ap".into(),
                    i as u64 + 1,
                )
            })
            .collect()
    };
    for i in 0..3 {
        assert_eq!(copies_on(region.node(i), 30).await, want(30), "member {i}");
    }

    // The next leader goes on from the resume point the region replicated.
    move_leadership_away_from(&mut region, leader).await;
    let batch: Vec<PubMessage> = (30..60).map(msg).collect();
    for r in ap_client
        .publish_batch(batch, AckLevel::Local)
        .await
        .unwrap()
    {
        r.unwrap();
    }
    for i in 0..3 {
        assert_eq!(copies_on(region.node(i), 60).await, want(60), "member {i}");
    }
    ap_client.close().await;
    ap.stop().await;
    region.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_region_copies_from_the_leader_when_sent_to_a_follower() {
    let region = Region::start_with(|c| c.mesh.links = vec![link_from("ap", None, None)]).await;
    let leader = region.leader().await;
    let follower = (leader + 1) % 3;
    let client = region.client(&[leader]).await;
    create_stream(&client).await;
    publish_orders(&client, 30).await;
    client.close().await;

    // Only the leader serves copies: it runs the plugins the region deployed last.
    let at_follower = region.client(&[follower]).await;
    let asked = at_follower
        .replicate(tern_client::MeshSubscribe {
            stream: "orders".into(),
            region: "ap".into(),
            credit: 16,
            ..Default::default()
        })
        .await;
    match asked {
        Err(ClientError::Server(e)) => {
            assert_eq!(e.code, ErrorCode::NotLeader);
            assert_eq!(e.message, region.servers[leader]);
        }
        other => panic!("a follower served copies: {other:?}"),
    }
    at_follower.close().await;

    // The link names that follower first, and moves to the leader it names.
    let nodes = vec![
        region.servers[follower].clone(),
        region.servers[leader].clone(),
    ];
    let ca = region.node(0).ca();
    let ap = TestNode::start_with(move |c| {
        c.region = "ap".into();
        let mut link = link_from("eu", Some(String::new()), Some(ca));
        link.nodes = nodes;
        c.mesh.links = vec![link];
        c.mesh.backoff_initial_ms = 20;
        c.mesh.backoff_max_ms = 200;
    })
    .await;
    let ap_client = ap.client().await;
    create_stream(&ap_client).await;
    let copies = copies_on(&ap, 30).await;
    let want: Vec<_> = (0..30)
        .map(|i| {
            (
                i as u64 + 1,
                format!("order-{i}"),
                "eu".to_string(),
                i as u64 + 1,
            )
        })
        .collect();
    assert_eq!(copies, want);
    ap_client.close().await;
    ap.stop().await;
    region.stop().await;
}
