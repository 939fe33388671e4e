//! A node whose leader went silent campaigns when its election timeout says so.
//!
//! openraft 0.9 postpones a node's next campaign by `2 x election_timeout_max` once one of
//! its vote requests met a longer log than its own, and forgets that only when the node
//! next campaigns on its own timer. A node that lost an election that way (the follower
//! with the shortest timeout, an entry behind when the leader died) carries the delay
//! into later failovers, even one in which it holds the longest log and is the only
//! member that can win: elections then took 2.4-3.7 s instead of 1.1-1.5 s
//! (docs/benchmarks.md). openraft fixed it after 0.9 (its pull request 2087).
//!
//! Until then this watch keeps the timer openraft would keep with a flag that is not
//! stale: the delay counts only for refusals of a campaign made since the node last
//! followed a leader ([`Refusals`], recorded by the network). When that timer has run
//! out by [`GRACE`] and the node has not campaigned, the watch starts the campaign. With
//! no stale delay, openraft campaigns first and the watch does nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;

use crate::{NodeId, Raft};

/// How often the watch looks.
const WATCH_EVERY: Duration = Duration::from_millis(100);
/// Past its deadline, openraft campaigns at its next tick (every 1.5 heartbeats, 225 ms
/// by default); the watch leaves it that and a margin.
const GRACE: Duration = Duration::from_millis(300);

/// The highest term in which one of this node's vote requests was refused by a peer
/// holding a longer log.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    longer_log_term: AtomicU64,
}

impl Refusals {
    /// A vote request of `term` was refused by a peer whose log is longer.
    pub(crate) fn longer_log(&self, term: u64) {
        self.longer_log_term.fetch_max(term, Ordering::Relaxed);
    }

    fn longer_log_term(&self) -> u64 {
        self.longer_log_term.load(Ordering::Relaxed)
    }
}

/// When this node last heard from the leader it follows (openraft refreshes the vote at
/// each of that leader's append-entries, heartbeats included), as the watch last saw it:
/// up to [`WATCH_EVERY`] late.
#[derive(Debug)]
pub(crate) struct Heard {
    start: tokio::time::Instant,
    /// Milliseconds from `start` to the last refresh of the vote.
    refreshed_ms: AtomicU64,
}

impl Heard {
    /// Counts as heard from just now, until the watch first looks.
    pub(crate) fn new() -> Heard {
        Heard {
            start: tokio::time::Instant::now(),
            refreshed_ms: AtomicU64::new(0),
        }
    }

    fn record(&self, silent: Duration) {
        let at = self.start.elapsed().saturating_sub(silent).as_millis() as u64;
        self.refreshed_ms.store(at, Ordering::Relaxed);
    }

    /// Whether the vote was refreshed within `within`.
    pub(crate) fn within(&self, within: Duration) -> bool {
        let now = self.start.elapsed().as_millis() as u64;
        now.saturating_sub(self.refreshed_ms.load(Ordering::Relaxed)) < within.as_millis() as u64
    }
}

/// What the watch reads of openraft's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    /// Follower or candidate (only these campaign).
    may_campaign: bool,
    /// The vote is committed: the node follows an elected leader.
    following: bool,
    /// Term of the vote.
    term: u64,
    /// Time since the vote was last refreshed (by the leader, or by casting it).
    silent: Duration,
}

/// How long after its vote was refreshed a node campaigns at the latest, as openraft
/// decides it with `election_timeout_max` = `timeout` (its lease, and the end of the
/// range its own timeout is drawn from), with the longer-log delay only when a campaign
/// since the last leader (`led_term`) earned it.
fn deadline(seen: &Seen, timeout: Duration, led_term: u64, longer_log_term: u64) -> Duration {
    let base = if seen.following { 2 * timeout } else { timeout };
    if !seen.following && longer_log_term > led_term {
        base + 2 * timeout
    } else {
        base
    }
}

/// Whether the watch should start a campaign now.
fn overdue(seen: &Seen, timeout: Duration, led_term: u64, longer_log_term: u64) -> bool {
    seen.may_campaign && seen.silent > deadline(seen, timeout, led_term, longer_log_term) + GRACE
}

/// Starts the watch of node `me`, started with openraft `config`; it ends with `raft`.
pub(crate) fn spawn(
    raft: &Raft,
    me: NodeId,
    config: &openraft::Config,
    refusals: Arc<Refusals>,
    heard: Arc<Heard>,
) -> tokio::task::JoinHandle<()> {
    let timeout = Duration::from_millis(config.election_timeout_max);
    tokio::spawn(watch(raft.clone(), me, timeout, refusals, heard))
}

/// Watches `raft` (node `me`, openraft's `election_timeout_max` = `timeout`) until it
/// stops.
async fn watch(
    raft: Raft,
    me: NodeId,
    timeout: Duration,
    refusals: Arc<Refusals>,
    heard: Arc<Heard>,
) {
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The term of the last leader this node followed.
    let mut led_term = 0;
    loop {
        tick.tick().await;
        let seen = raft
            .with_raft_state(move |st| {
                let vote = st.vote_ref();
                let since = st.vote_last_modified()?;
                Some(Seen {
                    may_campaign: st.server_state == ServerState::Follower
                        || st.server_state == ServerState::Candidate,
                    following: vote.is_committed() && vote.leader_id().voted_for() != Some(me),
                    term: vote.leader_id().term,
                    silent: tokio::time::Instant::now() - since,
                })
            })
            .await;
        let seen = match seen {
            Ok(Some(seen)) => seen,
            Ok(None) => continue,
            Err(_) => return, // Raft has stopped.
        };
        heard.record(seen.silent);
        if seen.following {
            led_term = seen.term;
        }
        if overdue(&seen, timeout, led_term, refusals.longer_log_term()) {
            tracing::info!(
                silent_ms = seen.silent.as_millis() as u64,
                term = seen.term,
                "election timeout passed without a campaign: campaigning"
            );
            if raft.trigger().elect().await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A node of id 3 with the defaults: its timeout is 630 ms, openraft's range 630-631.
    const T: Duration = Duration::from_millis(631);

    fn seen(following: bool, term: u64, silent_ms: u64) -> Seen {
        Seen {
            may_campaign: true,
            following,
            term,
            silent: Duration::from_millis(silent_ms),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn heard_counts_from_the_last_refresh_the_watch_saw() {
        let within = Duration::from_millis(450);
        let heard = Heard::new();
        assert!(heard.within(within), "a new node counts as just heard from");
        tokio::time::advance(Duration::from_millis(1_000)).await;
        heard.record(Duration::from_millis(600));
        assert!(!heard.within(within), "silent for 600 ms");
        heard.record(Duration::from_millis(100));
        assert!(heard.within(within), "refreshed 100 ms ago");
        tokio::time::advance(Duration::from_millis(349)).await;
        assert!(heard.within(within), "449 ms since the refresh");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!heard.within(within), "450 ms since the refresh");
        // A silence longer than the node has run counts from its start.
        heard.record(Duration::from_secs(60));
        assert!(!heard.within(within));
    }

    #[test]
    fn a_follower_campaigns_after_lease_and_timeout_whatever_it_was_refused_before() {
        // openraft campaigns after lease + timeout (1,261 ms), at its next tick: the watch
        // leaves it that.
        assert!(!overdue(&seen(true, 7, 1_262), T, 7, 0));
        assert!(!overdue(&seen(true, 7, 1_262 + 225), T, 7, 0));
        assert!(overdue(&seen(true, 7, 1_600), T, 7, 0));
        // A refusal from an earlier election (term 5) does not postpone this one, while
        // openraft would wait 2 x 631 ms more.
        assert!(overdue(&seen(true, 7, 1_600), T, 7, 5));
    }

    #[test]
    fn a_candidate_refused_for_a_shorter_log_in_this_election_waits_longer() {
        // Candidate in term 8 after following the leader of term 7.
        assert!(overdue(&seen(false, 8, 1_000), T, 7, 0));
        // Refused in term 8 by a longer log: the others get their turn first.
        assert!(!overdue(&seen(false, 8, 1_000), T, 7, 8));
        assert!(!overdue(&seen(false, 8, 631 + 1_262 + 200), T, 7, 8));
        assert!(overdue(&seen(false, 8, 631 + 1_262 + 400), T, 7, 8));
    }

    /// The network records a vote refused by a peer with a longer log, with the term the
    /// vote was for: that is what tells the watch a longer-log delay is earned.
    #[tokio::test(start_paused = true)]
    async fn a_vote_refused_for_a_shorter_log_is_recorded_with_its_term() {
        use std::collections::BTreeMap;

        use crate::{Command, NodeAddr, RegionConfig, RegionStore, Router};

        let dir = tempfile::tempdir().expect("temp dir");
        let router = Arc::new(Router::new(7));
        let config = RegionConfig::default();
        let (mut rafts, mut refusals, mut members) =
            (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        for id in [1u64, 2, 3] {
            let store = RegionStore::open(dir.path().join(format!("{id}.redb"))).expect("open");
            let network = crate::Network::new(id, router.clone());
            refusals.insert(id, network.refusals());
            let openraft = config.to_openraft(id).expect("config");
            let raft = Raft::new(id, openraft, network, store.log, store.state_machine)
                .await
                .expect("start");
            router.register(id, raft.clone());
            rafts.insert(id, raft);
            members.insert(
                id,
                NodeAddr::with_client(format!("r{id}"), format!("c{id}")),
            );
        }
        rafts[&1].initialize(members).await.expect("initialize");
        let leader = rafts[&1]
            .wait(Some(Duration::from_secs(10)))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await
            .expect("a leader")
            .current_leader
            .expect("a leader");
        let mut others = [1u64, 2, 3].into_iter().filter(|id| *id != leader);
        let (behind, ahead) = (others.next().unwrap(), others.next().unwrap());
        // `behind` stops hearing from the leader; `ahead` gets one more entry.
        router.cut(leader, behind);
        let put = Command::Put {
            key: "k".into(),
            value: b"v".to_vec(),
        };
        rafts[&leader]
            .client_write(put)
            .await
            .expect("committed with `ahead`");
        let term = rafts[&behind].metrics().borrow().current_term;
        assert_eq!(refusals[&behind].longer_log_term(), 0);
        // `ahead` refuses (its leader's lease holds, and its log is longer) and says how
        // long its log is; the leader's answer is lost on the cut link.
        rafts[&behind].trigger().elect().await.expect("campaign");
        // Less than any election timeout: no campaign of its own timer yet.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(refusals[&behind].longer_log_term(), term + 1);
        assert_eq!(refusals[&ahead].longer_log_term(), 0);
        for raft in rafts.values() {
            let _ = raft.shutdown().await;
        }
    }

    #[test]
    fn leaders_and_learners_are_left_alone() {
        let mut s = seen(true, 7, 60_000);
        s.may_campaign = false;
        assert!(!overdue(&s, T, 7, 0));
    }
}
