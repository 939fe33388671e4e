//! The operator's region commands against a real region: three nodes on redb files joined
//! by the in-process router, under tokio's paused clock (as in cluster.rs). They prove that
//! `status` agrees on every node about who leads and who votes and shows each member's lag
//! on the leader; that `add_node` turns a fresh node into a voter that catches up with the
//! leader and `remove_node` takes it out again (the leader too, and then the others elect
//! another); that a follower refuses both with the leader's id and client address; and that
//! the last voter, unknown nodes and changed addresses are refused.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{addr, append, Cluster, Outcome};
use tern_region::{add_node, remove_node, status, AdminError, NodeId, RegionConfig};

const WAIT: Duration = Duration::from_secs(10);

async fn write_some(c: &Cluster, n: u32) {
    for i in 0..n {
        let o = c
            .write(append("s", &[format!("m{i}").as_bytes()]), WAIT)
            .await;
        assert!(matches!(o, Outcome::Ok(_)), "write {i}: {o:?}");
    }
}

fn voters(s: &tern_region::RegionStatus) -> BTreeSet<NodeId> {
    s.members.iter().filter(|m| m.voter).map(|m| m.id).collect()
}

/// Waits until every node names `leader` (followers learn it from its heartbeats).
async fn all_know(c: &Cluster, leader: NodeId) {
    for &id in c.live.keys() {
        c.raft(id)
            .wait(Some(WAIT))
            .current_leader(leader, "knows the leader")
            .await
            .expect("every node learns the leader");
    }
}

#[tokio::test(start_paused = true)]
async fn status_agrees_on_leader_and_voters_and_shows_lag_on_the_leader() {
    let c = Cluster::voters(&[1, 2, 3], 11, RegionConfig::default()).await;
    let leader = c.leader(WAIT, None).await.expect("leader");
    write_some(&c, 5).await;
    assert!(c.converge(WAIT).await);
    all_know(&c, leader).await;

    for id in [1, 2, 3] {
        let s = status(c.raft(id)).await;
        assert_eq!(s.node_id, id);
        assert_eq!(s.leader, Some(leader), "node {id}");
        assert_eq!(voters(&s), BTreeSet::from([1, 2, 3]), "node {id}");
        assert!(s.term >= 1);
        assert!(s.commit_index.is_some(), "node {id} knows a commit index");
        assert!(s.last_applied <= s.commit_index && s.commit_index <= s.last_log_index);
        for m in &s.members {
            assert_eq!(m.region_addr, format!("127.0.0.1:{}", 7000 + m.id));
            assert_eq!(m.client_addr, format!("127.0.0.1:{}", 7400 + m.id));
        }
        if id == leader {
            assert_eq!(s.state, "leader");
            for m in &s.members {
                assert!(m.matched.is_some(), "member {} has a matched index", m.id);
                assert_eq!(m.lag, Some(0), "member {} caught up", m.id);
            }
        } else {
            assert_eq!(s.state, "follower");
            assert!(s
                .members
                .iter()
                .all(|m| m.matched.is_none() && m.lag.is_none()));
        }
    }

    // A follower cut off falls behind, and the leader's status shows by how much.
    let behind = [1, 2, 3]
        .into_iter()
        .find(|&i| i != leader)
        .expect("follower");
    c.router.isolate(behind, [1, 2, 3]);
    write_some(&c, 3).await;
    let s = status(c.raft(leader)).await;
    let lagging = s.members.iter().find(|m| m.id == behind).expect("member");
    assert!(
        lagging.lag >= Some(3),
        "lag of the cut-off node: {lagging:?}"
    );
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn added_node_becomes_a_caught_up_voter_and_is_removed_again() {
    let mut c = Cluster::voters(&[1, 2, 3], 12, RegionConfig::default()).await;
    write_some(&c, 20).await;
    let leader = c.leader(WAIT, None).await.expect("leader");

    c.start(4).await;
    add_node(c.raft(leader), 4, addr(4))
        .await
        .expect("add node 4");
    let s = status(c.raft(leader)).await;
    assert_eq!(voters(&s), BTreeSet::from([1, 2, 3, 4]));
    // Adding it again changes nothing.
    add_node(c.raft(leader), 4, addr(4))
        .await
        .expect("add again");

    write_some(&c, 2).await;
    assert!(c.converge(WAIT).await, "node 4 did not catch up");
    let lead = status(c.raft(leader)).await;
    let new = status(c.raft(4)).await;
    assert_eq!(new.last_applied, lead.last_applied);
    assert_eq!(new.state, "follower");
    assert_eq!(c.stream(4, "s").len(), 22);

    remove_node(c.raft(leader), 4).await.expect("remove node 4");
    let s = status(c.raft(leader)).await;
    assert_eq!(voters(&s), BTreeSet::from([1, 2, 3]));
    assert!(s.members.iter().all(|m| m.id != 4), "node 4 left: {s:?}");
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_follower_refuses_changes_and_names_the_leader() {
    let mut c = Cluster::voters(&[1, 2, 3], 13, RegionConfig::default()).await;
    let leader = c.leader(WAIT, None).await.expect("leader");
    all_know(&c, leader).await;
    let follower = [1, 2, 3]
        .into_iter()
        .find(|&i| i != leader)
        .expect("follower");
    let want = AdminError::NotLeader {
        leader: Some(leader),
        leader_client_addr: Some(format!("127.0.0.1:{}", 7400 + leader)),
    };

    c.start(4).await;
    assert_eq!(
        add_node(c.raft(follower), 4, addr(4)).await,
        Err(want.clone())
    );
    assert_eq!(remove_node(c.raft(follower), leader).await, Err(want));
    assert_eq!(
        voters(&status(c.raft(leader)).await),
        BTreeSet::from([1, 2, 3])
    );
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn last_voter_unknown_nodes_and_changed_addresses_are_refused() {
    let c = Cluster::voters(&[1], 14, RegionConfig::default()).await;
    assert_eq!(c.leader(WAIT, None).await, Some(1));
    let refused = |r: Result<(), AdminError>| matches!(r, Err(AdminError::Refused(_)));
    assert!(refused(remove_node(c.raft(1), 1).await), "last voter");
    assert!(refused(remove_node(c.raft(1), 9).await), "unknown node");
    assert!(
        refused(add_node(c.raft(1), 1, addr(5)).await),
        "a member's addresses are not changed by adding it"
    );
    assert_eq!(voters(&status(c.raft(1)).await), BTreeSet::from([1]));
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn removing_the_leader_lets_the_others_elect_another() {
    let c = Cluster::voters(&[1, 2, 3], 15, RegionConfig::default()).await;
    write_some(&c, 3).await;
    let old = c.leader(WAIT, None).await.expect("leader");
    remove_node(c.raft(old), old)
        .await
        .expect("remove the leader");
    let new = c.leader(WAIT, Some(old)).await.expect("a new leader");
    let rest: BTreeSet<NodeId> = [1, 2, 3].into_iter().filter(|&i| i != old).collect();
    assert!(rest.contains(&new));
    assert_eq!(voters(&status(c.raft(new)).await), rest);
    write_some(&c, 1).await;
    c.shutdown().await;
}
