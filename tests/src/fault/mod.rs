//! A fault-testing harness: producers publish against a cluster of real `tern` processes on
//! loopback while faults are injected; every operation is recorded as invoke / ok / fail /
//! unknown (a timeout or a lost connection is unknown, never counted as lost); after
//! healing, every node is drained and the history is checked:
//!
//! - lost: acked, never readable afterwards (must be 0);
//! - duplicated: one message id stored at two positions (must be 0);
//! - per-key order violations among acked messages (must be 0);
//! - divergence: nodes disagree on a stream's content (must be 0);
//!
//! and the run reports RTO (from each fault to the next successful publish) and throughput.
//!
//! - [`Cluster`]: `tern serve` processes with SIGKILL, SIGSTOP/SIGCONT, restart and wipe,
//!   alone or as one region (leader probe, partitions through the region transport's test
//!   switch);
//! - [`History`]: the operation log, shared by producers;
//! - [`Workload`]: producers with per-key counters, and the drain of every node;
//! - [`check`]: the checker, a pure function of the history and what the nodes hold.

mod check;
mod cluster;
mod history;
mod workload;

pub use check::{check, Report, StoredMessage};
pub use cluster::{Cluster, NodeProcess, Probe, PROBE_STREAM};
pub use history::{History, Op, Outcome};
pub use workload::{drain, Workload};
