//! A region of three nodes on real redb files, connected by the in-process router, under
//! tokio's paused clock: openraft's timers run in virtual time, so these tests are fast and
//! do not depend on how loaded the machine is. They prove election and replication, that a
//! leader crash loses no acknowledged write, that an isolated leader acknowledges nothing
//! while the majority carries on, that a node whose file was deleted rejoins and
//! catches up (by snapshot, then log), and that membership changes (learner, promotion, removal) work.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{append, Cluster, Outcome};
use tern_region::{Command, RegionConfig, Response};

const WAIT: Duration = Duration::from_secs(10);

fn positions(o: &Outcome) -> Vec<u64> {
    match o {
        Outcome::Ok(Response::Appended { positions }) => positions.clone(),
        other => panic!("write not acknowledged: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn elects_a_leader_and_replicates_with_identical_positions() {
    let c = Cluster::voters(&[1, 2, 3], 1, RegionConfig::default()).await;
    assert!(c.leader(WAIT, None).await.is_some(), "no leader elected");

    let first = c.write(append("orders", &[b"a", b"b"]), WAIT).await;
    assert_eq!(positions(&first), vec![1, 2]);
    let second = c.write(append("orders", &[b"c"]), WAIT).await;
    assert_eq!(positions(&second), vec![3]);
    let other = c.write(append("audit", &[b"x"]), WAIT).await;
    assert_eq!(positions(&other), vec![1], "positions are per stream");
    let put = c
        .write(
            Command::Put {
                key: "stream/orders".into(),
                value: b"cfg".to_vec(),
            },
            WAIT,
        )
        .await;
    assert_eq!(put, Outcome::Ok(Response::Applied));

    assert!(c.converge(WAIT).await, "followers did not catch up");
    let want: Vec<(u64, Vec<u8>)> =
        vec![(1, b"a".to_vec()), (2, b"b".to_vec()), (3, b"c".to_vec())];
    for id in [1, 2, 3] {
        assert_eq!(c.stream(id, "orders"), want, "node {id}");
        assert_eq!(c.reader(id).stream_tip("orders").unwrap(), 3);
        assert_eq!(
            c.reader(id).get("stream/orders").unwrap(),
            Some(b"cfg".to_vec())
        );
    }

    let del = c
        .write(
            Command::Delete {
                key: "stream/orders".into(),
            },
            WAIT,
        )
        .await;
    assert_eq!(del, Outcome::Ok(Response::Applied));
    assert!(c.converge(WAIT).await);
    for id in [1, 2, 3] {
        assert_eq!(
            c.reader(id).get("stream/orders").unwrap(),
            None,
            "node {id}"
        );
    }
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn leader_crash_elects_another_and_keeps_acknowledged_writes() {
    let mut c = Cluster::voters(&[1, 2, 3], 2, RegionConfig::default()).await;
    let mut acked = Vec::new();
    for i in 0..10u32 {
        let msg = format!("m{i}");
        let o = c.write(append("s", &[msg.as_bytes()]), WAIT).await;
        acked.push((positions(&o)[0], msg.into_bytes()));
    }
    let old = c.leader(WAIT, None).await.expect("leader");
    c.crash(old).await;

    let new = c
        .leader(WAIT, Some(old))
        .await
        .expect("no new leader after the crash");
    assert_ne!(new, old);
    for i in 10..15u32 {
        let msg = format!("m{i}");
        let o = c.write(append("s", &[msg.as_bytes()]), WAIT).await;
        acked.push((positions(&o)[0], msg.into_bytes()));
    }

    // The old leader comes back on its file and catches up.
    c.start(old).await;
    assert!(c.converge(WAIT).await, "restarted node did not catch up");
    let want: Vec<(u64, Vec<u8>)> = (1..=15).zip(acked.iter().map(|a| a.1.clone())).collect();
    assert_eq!(
        acked.iter().map(|a| a.0).collect::<Vec<_>>(),
        (1..=15).collect::<Vec<_>>()
    );
    for id in [1, 2, 3] {
        assert_eq!(c.stream(id, "s"), want, "node {id}");
    }
    c.shutdown().await;
}

/// A node whose file was deleted must not rejoin as the voter it was: it forgot its vote
/// and its log, so it could vote twice in a term or help elect a leader missing acknowledged
/// entries. It is removed from the voters, comes back as a learner with an empty file,
/// catches up (by snapshot, since the log it needs is purged, then by log), and is promoted.
#[tokio::test(start_paused = true)]
async fn node_with_deleted_file_rejoins_by_snapshot_then_log() {
    // Snapshot often and keep little log, so the leader purges what the node needs.
    let config = RegionConfig {
        snapshot_logs_since_last: 20,
        logs_kept_after_snapshot: 5,
        purge_batch_entries: 1,
        ..RegionConfig::default()
    };
    let mut c = Cluster::voters(&[1, 2, 3], 3, config).await;
    let leader = c.leader(WAIT, None).await.expect("leader");
    let lost = [1, 2, 3]
        .into_iter()
        .find(|&i| i != leader)
        .expect("follower");
    c.crash(lost).await;
    std::fs::remove_file(c.path(lost)).expect("delete the node's file");
    let rest: BTreeSet<u64> = [1, 2, 3].into_iter().filter(|&i| i != lost).collect();
    c.raft(leader)
        .change_membership(rest.clone(), false)
        .await
        .expect("remove the wiped node");

    for i in 0..60u32 {
        let o = c
            .write(append("s", &[format!("m{i}").as_bytes()]), WAIT)
            .await;
        assert_eq!(positions(&o), vec![u64::from(i) + 1]);
    }
    let leader = c.leader(WAIT, None).await.expect("leader");
    let purged = c.raft(leader).metrics().borrow().purged;
    assert!(
        purged.is_some_and(|p| p.index > 1),
        "leader kept its whole log ({purged:?}); the test needs it purged"
    );

    c.start(lost).await;
    c.raft(leader)
        .add_learner(lost, common::addr(lost), true)
        .await
        .expect("add the wiped node as a learner");
    assert!(c.converge(WAIT).await, "wiped node did not catch up");
    let m = c.raft(lost).metrics().borrow().clone();
    assert!(
        m.snapshot.is_some(),
        "wiped node caught up without a snapshot"
    );
    c.raft(leader)
        .change_membership(BTreeSet::from([1, 2, 3]), false)
        .await
        .expect("promote the rejoined node");

    // Entries after the snapshot arrive through the log.
    let o = c.write(append("s", &[b"after"]), WAIT).await;
    assert_eq!(positions(&o), vec![61]);
    assert!(c.converge(WAIT).await);
    let want = c.stream(leader, "s");
    assert_eq!(want.len(), 61);
    for id in [1, 2, 3] {
        assert_eq!(c.stream(id, "s"), want, "node {id}");
    }
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn learner_is_promoted_and_a_voter_is_removed() {
    let mut c = Cluster::voters(&[1, 2, 3], 4, RegionConfig::default()).await;
    for i in 0..5u32 {
        positions(
            &c.write(append("s", &[format!("m{i}").as_bytes()]), WAIT)
                .await,
        );
    }
    c.start(4).await;
    let leader = c.leader(WAIT, None).await.expect("leader");
    c.raft(leader)
        .add_learner(4, common::addr(4), true)
        .await
        .expect("add learner");
    assert!(c.converge(WAIT).await, "learner did not catch up");
    assert_eq!(c.stream(4, "s").len(), 5);
    assert_eq!(c.voter_ids(leader), BTreeSet::from([1, 2, 3]));

    c.raft(leader)
        .change_membership(BTreeSet::from([1, 2, 3, 4]), false)
        .await
        .expect("promote 4");
    assert_eq!(c.voter_ids(leader), BTreeSet::from([1, 2, 3, 4]));

    // Remove a voter that is not the leader, so the test checks removal, not failover.
    let gone = [1, 2, 3]
        .into_iter()
        .find(|&i| i != leader)
        .expect("follower");
    let rest: BTreeSet<u64> = [1, 2, 3, 4].into_iter().filter(|&i| i != gone).collect();
    c.raft(leader)
        .change_membership(rest.clone(), false)
        .await
        .expect("remove a voter");
    assert_eq!(c.voter_ids(leader), rest);
    c.crash(gone).await;

    // The three remaining voters still commit, and the removed node is not needed.
    let o = c.write(append("s", &[b"after"]), WAIT).await;
    assert_eq!(positions(&o), vec![6]);
    assert!(c.converge(WAIT).await);
    for id in rest {
        assert_eq!(c.stream(id, "s").len(), 6, "node {id}");
    }
    c.shutdown().await;
}

/// The leader is cut off from both followers: what it accepts while alone is never
/// acknowledged, the majority elects another leader and keeps acknowledging, and after the
/// partition heals the old leader's lone entry is gone from every node.
#[tokio::test(start_paused = true)]
async fn isolated_leader_never_acknowledges_and_majority_carries_on() {
    let c = Cluster::voters(&[1, 2, 3], 5, RegionConfig::default()).await;
    positions(&c.write(append("s", &[b"before"]), WAIT).await);
    let old = c.leader(WAIT, None).await.expect("leader");
    c.router.isolate(old, [1, 2, 3]);

    let lone = tokio::spawn(common::write(
        c.raft(old).clone(),
        append("s", &[b"minority"]),
        Duration::from_secs(30),
    ));
    let new = c
        .leader(WAIT, Some(old))
        .await
        .expect("the majority elected no leader");
    let o = c.write_via(new, append("s", &[b"majority"]), WAIT).await;
    assert_eq!(positions(&o), vec![2]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        !lone.is_finished(),
        "the isolated leader answered while isolated"
    );

    c.router.heal();
    let outcome = lone.await.expect("write task");
    assert!(
        !matches!(outcome, Outcome::Ok(_)),
        "the minority write was acknowledged: {outcome:?}"
    );
    assert!(c.converge(WAIT).await);
    let want = vec![(1, b"before".to_vec()), (2, b"majority".to_vec())];
    for id in [1, 2, 3] {
        assert_eq!(c.stream(id, "s"), want, "node {id}");
    }
    c.shutdown().await;
}
