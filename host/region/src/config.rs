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
    /// Lower bound of the randomized election timeout. Default 450 ms.
    ///
    /// openraft's 150-300 ms assumes a quiet LAN and an idle CPU. An fsync on a busy disk
    /// or a scheduling stall on two shared cores can take 100-300 ms, and a timeout that
    /// short turns those stalls into needless elections (each one stops writes for a round).
    /// 450 ms is three heartbeats: a follower campaigns only after three in a row are lost.
    pub election_timeout_ms_min: u64,
    /// Upper bound of the randomized election timeout. Default 900 ms.
    ///
    /// Failover takes longer than one election timeout: openraft 0.9 has a follower first
    /// honour the old leader's lease (the maximum election timeout, 0.9 s) and then wait its
    /// own timeout (drawn once per node at start), so a new leader is elected 1.35-1.8 s
    /// after the old one died, plus a vote round. Measured with 20 leader kills of a 3-node
    /// region of processes (docs/benchmarks.md): next acked publish p50 2.1 s, p99 2.2 s, most
    /// of it the harness client's 2 s request timeout on the killed node. With 600-1200 ms it
    /// was p50 2.2 s, p99 4.7 s. The wide range (2x) keeps split votes rare.
    pub election_timeout_ms_max: u64,
    /// A node's store: build a snapshot once the log applied since the last one holds this
    /// many bytes, and at least as many as that snapshot. Default 512 MiB.
    ///
    /// A store snapshot copies every table (node_snapshot.rs), so its cost grows with what
    /// the streams retain: tying it to the log's bytes, and to the last snapshot's size,
    /// keeps the snapshot writes at most about as large as the log writes they let go.
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
            snapshot_log_bytes: 512 * 1024 * 1024,
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

impl RegionConfig {
    /// The openraft configuration, validated (e.g. heartbeat below the election timeout).
    pub fn to_openraft(&self) -> Result<Arc<Config>, RegionConfigError> {
        let c = Config {
            cluster_name: self.cluster_name.clone(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_ms_min,
            election_timeout_max: self.election_timeout_ms_max,
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
        assert!(c.to_openraft().is_ok());
        // The old leader's lease (the longest timeout) plus the longest election timeout:
        // a new leader within 1.8 s, before the vote round.
        assert!(2 * c.election_timeout_ms_max < 3000);
        assert!(c.heartbeat_ms * 3 <= c.election_timeout_ms_min);
    }

    #[test]
    fn heartbeat_above_election_timeout_is_refused() {
        let c = RegionConfig {
            heartbeat_ms: 1000,
            ..RegionConfig::default()
        };
        assert!(c.to_openraft().is_err());
    }
}
