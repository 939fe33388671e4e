//! Raft timing and log-compaction settings for a region, with the reasons for each default.

use std::sync::Arc;

use openraft::{Config, SnapshotPolicy};

/// How a region runs Raft. Every field has a documented default ([`RegionConfig::default`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionConfig {
    /// Name shared by the region's nodes (shows in openraft's logs and metrics).
    pub cluster_name: String,
    /// How often the leader sends heartbeats. Default 150 ms.
    ///
    /// openraft's default is 50 ms. Each heartbeat is one RPC per follower; on a loaded
    /// 2-core edge box 150 ms cuts that cost and still sits 4x under the election
    /// timeout, so several heartbeats in a row must go missing before anyone campaigns.
    /// openraft 0.9 also uses this interval as the deadline of every append-entries RPC
    /// (sending the entries and the follower's fsync): under load, 100 ms was too short
    /// and a follower fell behind for good, the same batch timing out again and again.
    pub heartbeat_ms: u64,
    /// Lower bound of the election timeouts. Default 450 ms.
    ///
    /// openraft's 150-300 ms assumes a quiet LAN and an idle CPU. An fsync on a busy disk
    /// or a scheduling stall on two shared cores can take 100-300 ms, and a timeout that
    /// short turns those stalls into needless elections (each one stops writes for a round).
    /// 450 ms is three heartbeats: a follower campaigns only after three in a row are lost.
    pub election_timeout_ms_min: u64,
    /// Upper bound of the election timeouts. Default 900 ms.
    ///
    /// Each node's election timeout is a fixed point of `[min, max)` chosen by its node id
    /// ([`RegionConfig::election_timeout_ms_for`]), not a random one. openraft 0.9 draws
    /// the timeout once per node at start and has no pre-vote, and a follower that knew a
    /// leader campaigns only after that leader's lease (its own timeout) and then its
    /// timeout again. Two followers whose drawn timeouts were close campaigned together,
    /// split the vote, and did so again on each retry: with random 450-900 ms, about one
    /// leader kill in twenty took a second round, and the next acked publish came after
    /// 3.6-4.3 s instead of 2.1 s (docs/benchmarks.md). With distinct timeouts the fastest
    /// live follower campaigns alone, and the others' leases (their own, shorter than twice
    /// the smallest timeout while max < 2 x min) have run out by then, so it wins in one
    /// round: a new leader 0.9-1.1 s after the old one died, for node ids 1-3. When that
    /// follower's log is shorter than another's, the other wins the next round; a node's
    /// later failovers are not slowed by such a refusal (campaign.rs).
    pub election_timeout_ms_max: u64,
    /// A node's store: take a snapshot once the log applied since the last one holds this
    /// many bytes, and let openraft purge the log behind it. Default 64 MiB.
    ///
    /// Taking one costs a durable commit of the store, not a copy of it: the store is
    /// written out only when a member needs it sent (node_snapshot.rs). So this bounds the
    /// log on disk (this much plus `logs_kept_after_snapshot` entries) at little cost.
    pub snapshot_log_bytes: u64,
    /// The key-value state machine ([`crate::StateMachine`]): build a snapshot after this
    /// many entries since the last one. Default 10,000.
    ///
    /// Counted in entries, not bytes: each entry is an append batch of up to
    /// [`crate::limits::APPEND_BATCH_BYTES_MAX`]. A snapshot copies the whole state machine
    /// (see snapshot.rs), so it should be rare relative to appends.
    pub snapshot_logs_since_last: u64,
    /// Entries kept in the log behind the last snapshot. Default 1,000.
    ///
    /// A follower that is this far behind or less (a short restart, a brief partition)
    /// catches up from the log instead of receiving a whole snapshot.
    pub logs_kept_after_snapshot: u64,
    /// Purge the log in steps of at least this many entries. Default 256: one purge
    /// transaction per step instead of one per entry.
    pub purge_batch_entries: u64,
    /// Most entries in one append-entries RPC. Default 300 (openraft's).
    pub append_entries_max: u64,
}

impl Default for RegionConfig {
    fn default() -> RegionConfig {
        RegionConfig {
            cluster_name: "tern-region".into(),
            heartbeat_ms: 150,
            election_timeout_ms_min: 450,
            election_timeout_ms_max: 900,
            snapshot_log_bytes: 64 * 1024 * 1024,
            snapshot_logs_since_last: 10_000,
            logs_kept_after_snapshot: 1_000,
            purge_batch_entries: 256,
            append_entries_max: 300,
        }
    }
}

/// How long one snapshot chunk may take to be sent and written.
const INSTALL_SNAPSHOT_CHUNK_MS: u64 = 2_000;

/// A region configuration openraft refuses.
#[derive(Debug, thiserror::Error)]
#[error("invalid region raft configuration: {0}")]
pub struct RegionConfigError(#[source] Box<openraft::ConfigError>);

/// Election timeouts are spread over this many points: node ids 1-5 (a region of up to
/// five voters numbered from 1) get distinct ones.
const ELECTION_TIMEOUT_SLOTS: u64 = 5;

impl RegionConfig {
    /// The election timeout of node `id`: `min + (max - min) * ((id - 1) mod 5) / 5`, so
    /// 450, 540, 630, 720 or 810 ms with the defaults (see `election_timeout_ms_max`).
    pub fn election_timeout_ms_for(&self, id: u64) -> u64 {
        let span = self
            .election_timeout_ms_max
            .saturating_sub(self.election_timeout_ms_min);
        let slot = id.saturating_sub(1) % ELECTION_TIMEOUT_SLOTS;
        self.election_timeout_ms_min + span * slot / ELECTION_TIMEOUT_SLOTS
    }

    /// The openraft configuration of node `id`, validated (e.g. heartbeat below the
    /// election timeout). The node's election timeout is fixed
    /// ([`RegionConfig::election_timeout_ms_for`]); openraft takes a range, so it gets
    /// a range one millisecond wide, and its lease, the range's end, is that timeout too.
    pub fn to_openraft(&self, id: u64) -> Result<Arc<Config>, RegionConfigError> {
        let timeout = self.election_timeout_ms_for(id);
        let c = Config {
            cluster_name: self.cluster_name.clone(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: timeout,
            election_timeout_max: timeout + 1,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_logs_since_last),
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            // Purging in steps much larger than the log kept would keep far more than asked.
            purge_batch_size: self
                .purge_batch_entries
                .min(self.logs_kept_after_snapshot / 4)
                .max(1),
            max_payload_entries: self.append_entries_max,
            // Each snapshot chunk (3 MiB) must reach the follower and be written there
            // within this; openraft's 200 ms is tight for a loaded 2-core node.
            install_snapshot_timeout: INSTALL_SNAPSHOT_CHUNK_MS,
            ..Config::default()
        };
        c.validate()
            .map(Arc::new)
            .map_err(|e| RegionConfigError(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_fail_over_within_3_s() {
        let c = RegionConfig::default();
        for id in 1..=5 {
            assert!(c.to_openraft(id).is_ok());
        }
        // A follower campaigns after its lease and its timeout, both its own timeout: a new
        // leader within 1.7 s of the last heartbeat even for the slowest id, before the vote.
        assert!(2 * c.election_timeout_ms_max < 3000);
        assert!(c.heartbeat_ms * 3 <= c.election_timeout_ms_min);
    }

    #[test]
    fn node_ids_get_distinct_election_timeouts_that_win_in_one_round() {
        let c = RegionConfig::default();
        let timeouts: Vec<u64> = (1..=5).map(|id| c.election_timeout_ms_for(id)).collect();
        assert_eq!(timeouts, vec![450, 540, 630, 720, 810]);
        assert_eq!(c.election_timeout_ms_for(6), 450, "ids wrap around every 5");
        assert_eq!(c.election_timeout_ms_for(0), 450);
        // The first follower to campaign does so after twice its timeout; every other
        // follower's lease (its own timeout) has run out by then, so it grants the vote.
        let first = timeouts[0];
        assert!(timeouts.iter().all(|t| *t < 2 * first));
        let openraft = c.to_openraft(2).unwrap();
        assert_eq!(
            (openraft.election_timeout_min, openraft.election_timeout_max),
            (540, 541)
        );
    }

    #[test]
    fn heartbeat_above_election_timeout_is_refused() {
        let c = RegionConfig {
            heartbeat_ms: 1000,
            ..RegionConfig::default()
        };
        assert!(c.to_openraft(1).is_err());
    }
}
