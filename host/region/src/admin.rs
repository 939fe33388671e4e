//! The operator's view of a region and its membership changes: who is in it, who leads,
//! how far each member is behind, and adding or removing a node.
//!
//! [`status`] works on any node and reports what that node knows. [`add_node`] and
//! [`remove_node`] run on the leader; elsewhere they answer [`AdminError::NotLeader`] with
//! the leader's id and client address, so the caller can go there. Both are bounded in time
//! ([`crate::limits`]); a timeout leaves the outcome open and [`status`] tells it.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, RaftMetrics, ServerState};
use serde::{Deserialize, Serialize};

use crate::limits::{LEARNER_CATCH_UP_MS_MAX, MEMBERSHIP_CHANGE_MS_MAX, STATUS_QUERY_MS_MAX};
use crate::{NodeAddr, NodeId, Raft};

/// One node's view of its region. Its JSON form is the answer to a region status request
/// (docs/protocol.md).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RegionStatus {
    /// The node that answered.
    pub node_id: NodeId,
    /// Its role: `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub state: String,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    pub term: u64,
    /// Index of the last entry of its log.
    pub last_log_index: Option<u64>,
    /// Index of the last entry it knows to be committed; `None` if nothing is, or its Raft
    /// core did not answer in time.
    pub commit_index: Option<u64>,
    /// Index of the last entry its state machine applied.
    pub last_applied: Option<u64>,
    /// Index of the last entry its newest snapshot covers; `None` before its first one.
    #[serde(default)]
    pub snapshot_index: Option<u64>,
    /// Index of the last entry purged from its log (covered by a snapshot); `None` while
    /// the log is whole.
    #[serde(default)]
    pub purged_index: Option<u64>,
    /// Every member of the membership it knows, by id.
    pub members: Vec<MemberStatus>,
}

/// One member of a region, as the answering node sees it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MemberStatus {
    pub id: NodeId,
    /// Address of its region (Raft) endpoint.
    pub region_addr: String,
    /// Address clients use; empty when the member did not publish one.
    pub client_addr: String,
    /// A voter, or else a learner.
    pub voter: bool,
    /// Leader only: the index of the last entry known to be replicated to the member.
    pub matched: Option<u64>,
    /// Leader only: how many entries of the leader's log the member lacks
    /// (`last_log_index - matched`, the whole log when nothing is matched yet).
    pub lag: Option<u64>,
}

/// Why a membership change was not done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// This node does not lead the region; send the change to the leader.
    #[error("not the region leader (leader: {})", describe_leader(*.leader, .leader_client_addr))]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
        /// Where that leader serves clients, when it published it.
        leader_client_addr: Option<String>,
    },
    /// The change did not finish in time. It may still take effect: check the status.
    #[error("the membership change did not finish in time; it may still take effect")]
    Timeout,
    /// The change is not allowed (last voter, unknown node, another change in progress).
    #[error("refused: {0}")]
    Refused(String),
    /// openraft failed: its core stopped, or its storage failed.
    #[error("raft: {0}")]
    Raft(String),
}

fn describe_leader(leader: Option<NodeId>, client_addr: &Option<String>) -> String {
    match (leader, client_addr) {
        (Some(id), Some(addr)) => format!("node {id} at {addr}"),
        (Some(id), None) => format!("node {id}"),
        (None, _) => "unknown".into(),
    }
}

type Metrics = RaftMetrics<NodeId, NodeAddr>;
type WriteError = RaftError<NodeId, ClientWriteError<NodeId, NodeAddr>>;

/// What `raft`'s node knows of its region. openraft 0.9's metrics do not carry the commit
/// index, so it is asked of the Raft core (at most [`STATUS_QUERY_MS_MAX`]).
pub async fn status(raft: &Raft) -> RegionStatus {
    let committed = raft.with_raft_state(|st| st.committed.map(|c| c.index));
    let within = Duration::from_millis(STATUS_QUERY_MS_MAX);
    let commit_index = match tokio::time::timeout(within, committed).await {
        Ok(Ok(c)) => c,
        // Shut down, or too busy to answer: report the rest.
        _ => None,
    };
    let m = raft.metrics().borrow().clone();
    status_of(&m, commit_index)
}

/// The status described by openraft's metrics `m` and the commit index.
pub fn status_of(m: &Metrics, commit_index: Option<u64>) -> RegionStatus {
    let membership = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let members = membership
        .nodes()
        .map(|(&id, addr)| {
            let (matched, lag) = progress(m, id);
            MemberStatus {
                id,
                region_addr: addr.quic_addr.clone(),
                client_addr: addr.client_addr.clone(),
                voter: voters.contains(&id),
                matched,
                lag,
            }
        })
        .collect();
    RegionStatus {
        node_id: m.id,
        state: state_name(m.state).into(),
        leader: m.current_leader,
        term: m.current_term,
        last_log_index: m.last_log_index,
        commit_index,
        last_applied: m.last_applied.map(|l| l.index),
        snapshot_index: m.snapshot.map(|l| l.index),
        purged_index: m.purged.map(|l| l.index),
        members,
    }
}

fn state_name(s: ServerState) -> &'static str {
    match s {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

/// `(matched, lag)` of member `id` as the leader sees it; both `None` on other nodes and
/// for a member openraft has not reported yet.
fn progress(m: &Metrics, id: NodeId) -> (Option<u64>, Option<u64>) {
    let Some(repl) = m
        .replication
        .as_ref()
        .filter(|_| m.state == ServerState::Leader)
    else {
        return (None, None);
    };
    let matched = match repl.get(&id) {
        Some(log_id) => log_id.map(|l| l.index),
        // The leader's log is its own.
        None if id == m.id => m.last_log_index,
        None => return (None, None),
    };
    // Indexes start at 0: a log ending at index i holds i + 1 entries.
    let held = matched.map_or(0, |i| i + 1);
    let total = m.last_log_index.map_or(0, |i| i + 1);
    (matched, Some(total.saturating_sub(held)))
}

/// Adds node `id` at `addr` to the region as a voter: first as a learner, waiting (at most
/// [`LEARNER_CATCH_UP_MS_MAX`]) until it has caught up, then promoted with the existing
/// voters kept. A node that is already a voter at the same addresses is left as it is.
///
/// On [`AdminError::Timeout`] the node may be a learner that is still catching up; adding
/// it again promotes it, removing it takes it out.
pub async fn add_node(raft: &Raft, id: NodeId, addr: NodeAddr) -> Result<(), AdminError> {
    let m = raft.metrics().borrow().clone();
    ensure_leader(&m)?;
    let membership = m.membership_config.membership();
    if let Some(known) = membership.get_node(&id) {
        if *known != addr {
            return Err(AdminError::Refused(format!(
                "node {id} is already a member at region address {:?}, client address {:?}; \
                 remove it first",
                known.quic_addr, known.client_addr
            )));
        }
        if membership.voter_ids().any(|v| v == id) {
            return Ok(());
        }
    }
    let catch_up = Duration::from_millis(LEARNER_CATCH_UP_MS_MAX);
    match tokio::time::timeout(catch_up, raft.add_learner(id, addr, true)).await {
        Err(_) => return Err(AdminError::Timeout),
        Ok(added) => added.map_err(write_error)?,
    };
    let promote = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
    bounded(raft.change_membership(promote, false)).await
}

/// Removes node `id` from the region (a voter or a learner). The last voter is not removed.
pub async fn remove_node(raft: &Raft, id: NodeId) -> Result<(), AdminError> {
    let m = raft.metrics().borrow().clone();
    ensure_leader(&m)?;
    let membership = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let change = if voters.contains(&id) {
        if voters.len() == 1 {
            return Err(AdminError::Refused(format!(
                "node {id} is the region's last voter"
            )));
        }
        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
    } else if membership.get_node(&id).is_some() {
        ChangeMembers::RemoveNodes(BTreeSet::from([id]))
    } else {
        return Err(AdminError::Refused(format!(
            "node {id} is not a member of the region"
        )));
    };
    // `retain: false`: a removed voter leaves the membership instead of staying a learner.
    bounded(raft.change_membership(change, false)).await
}

/// Refuses a change on a node that does not lead. openraft would refuse it too, but only
/// the leader's membership is the one to check the change against.
fn ensure_leader(m: &Metrics) -> Result<(), AdminError> {
    if m.state == ServerState::Leader {
        return Ok(());
    }
    let node = m
        .current_leader
        .and_then(|l| m.membership_config.membership().get_node(&l));
    Err(not_leader(m.current_leader, node))
}

fn not_leader(leader: Option<NodeId>, node: Option<&NodeAddr>) -> AdminError {
    AdminError::NotLeader {
        leader,
        leader_client_addr: node
            .map(|n| n.client_addr.clone())
            .filter(|a| !a.is_empty()),
    }
}

/// Waits at most [`MEMBERSHIP_CHANGE_MS_MAX`] for a membership change to commit.
async fn bounded<T>(change: impl Future<Output = Result<T, WriteError>>) -> Result<(), AdminError> {
    let within = Duration::from_millis(MEMBERSHIP_CHANGE_MS_MAX);
    match tokio::time::timeout(within, change).await {
        Err(_) => Err(AdminError::Timeout),
        Ok(done) => done.map(|_| ()).map_err(write_error),
    }
}

fn write_error(e: WriteError) -> AdminError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            not_leader(f.leader_id, f.leader_node.as_ref())
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            AdminError::Refused(c.to_string())
        }
        RaftError::Fatal(f) => AdminError::Raft(f.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use openraft::testing::log_id;
    use openraft::{Membership, StoredMembership};

    use super::*;

    /// Voters 1 and 2, learner 3; node 1 leads at term 3 with entries 0..=10.
    fn metrics(state: ServerState) -> Metrics {
        let nodes = BTreeMap::from([
            (1, NodeAddr::with_client("a:7500", "a:7420")),
            (2, NodeAddr::with_client("b:7500", "b:7420")),
            (3, NodeAddr::new("c:7500")),
        ]);
        let membership = Membership::new(vec![BTreeSet::from([1, 2])], nodes);
        let mut m = Metrics::new_initial(1);
        m.state = state;
        m.current_leader = Some(1);
        m.current_term = 3;
        m.last_log_index = Some(10);
        m.last_applied = Some(log_id(3, 1, 9));
        m.snapshot = Some(log_id(3, 1, 6));
        m.purged = Some(log_id(2, 1, 4));
        m.membership_config = Arc::new(StoredMembership::new(Some(log_id(1, 1, 0)), membership));
        m.replication = (state == ServerState::Leader).then(|| {
            BTreeMap::from([
                (1, Some(log_id(3, 1, 10))),
                (2, Some(log_id(3, 1, 7))),
                (3, None),
            ])
        });
        m
    }

    /// Pins the JSON the status answer carries (docs/protocol.md documents it).
    #[test]
    fn leader_status_json() {
        let s = status_of(&metrics(ServerState::Leader), Some(9));
        let want = concat!(
            r#"{"node_id":1,"state":"leader","leader":1,"term":3,"last_log_index":10,"#,
            r#""commit_index":9,"last_applied":9,"snapshot_index":6,"purged_index":4,"members":["#,
            r#"{"id":1,"region_addr":"a:7500","client_addr":"a:7420","voter":true,"matched":10,"lag":0},"#,
            r#"{"id":2,"region_addr":"b:7500","client_addr":"b:7420","voter":true,"matched":7,"lag":3},"#,
            r#"{"id":3,"region_addr":"c:7500","client_addr":"","voter":false,"matched":null,"lag":11}]}"#,
        );
        assert_eq!(serde_json::to_string(&s).unwrap(), want);
        assert_eq!(serde_json::from_str::<RegionStatus>(want).unwrap(), s);
    }

    #[test]
    fn follower_status_has_no_progress() {
        let s = status_of(&metrics(ServerState::Follower), None);
        assert_eq!(s.state, "follower");
        assert_eq!(s.leader, Some(1));
        assert_eq!(s.commit_index, None);
        assert!(s
            .members
            .iter()
            .all(|m| m.matched.is_none() && m.lag.is_none()));
        assert_eq!(
            s.members.iter().map(|m| m.voter).collect::<Vec<_>>(),
            [true, true, false]
        );
    }

    #[test]
    fn a_follower_names_the_leader_and_its_client_address() {
        let m = metrics(ServerState::Follower);
        assert_eq!(
            ensure_leader(&m),
            Err(AdminError::NotLeader {
                leader: Some(1),
                leader_client_addr: Some("a:7420".into())
            })
        );
        let mut unknown = m.clone();
        unknown.current_leader = Some(3);
        assert_eq!(
            ensure_leader(&unknown),
            Err(AdminError::NotLeader {
                leader: Some(3),
                leader_client_addr: None
            })
        );
        assert_eq!(ensure_leader(&metrics(ServerState::Leader)), Ok(()));
    }
}
