//! The operation log of a run.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How a publish ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not finished yet (at the end of a run: unknown).
    Pending,
    /// Acked durable at this stream sequence.
    Ok { seq: u64 },
    /// Refused by the node with an error that means nothing was stored.
    Fail(String),
    /// May or may not have been stored (timeout, connection lost, retries exhausted).
    Unknown(String),
}

impl Outcome {
    /// What a publish's answer says: acked, refused for the message itself (nothing was
    /// stored), or anything else (it may have been stored).
    pub fn of_publish(r: Result<tern_client::Receipt, tern_client::ClientError>) -> Outcome {
        match r {
            Ok(r) => Outcome::Ok { seq: r.seq },
            Err(tern_client::ClientError::Server(e)) if !e.code.is_retryable() => {
                Outcome::Fail(format!("{}: {}", e.code, e.message))
            }
            Err(e) => Outcome::Unknown(e.to_string()),
        }
    }
}

/// One publish: its identity, what it carried, when it started and ended, how it ended.
#[derive(Debug, Clone)]
pub struct Op {
    pub producer: usize,
    pub id: String,
    pub key: String,
    /// Per-key counter: the n-th message of `key` carries `n`.
    pub counter: u64,
    pub invoked: Duration,
    pub completed: Option<Duration>,
    pub outcome: Outcome,
}

/// A fault injected at a moment of the run.
#[derive(Debug, Clone)]
pub struct Fault {
    pub at: Duration,
    pub what: String,
}

/// Operations and faults of one run, timed from its start.
pub struct History {
    start: Instant,
    ops: Mutex<Vec<Op>>,
    faults: Mutex<Vec<Fault>>,
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}

impl History {
    pub fn new() -> History {
        History {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Records the start of a publish; returns its index for [`History::complete`].
    pub fn invoke(&self, producer: usize, id: &str, key: &str, counter: u64) -> usize {
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        ops.push(Op {
            producer,
            id: id.to_string(),
            key: key.to_string(),
            counter,
            invoked: self.start.elapsed(),
            completed: None,
            outcome: Outcome::Pending,
        });
        ops.len() - 1
    }

    pub fn complete(&self, op: usize, outcome: Outcome) {
        let now = self.start.elapsed();
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(o) = ops.get_mut(op) {
            o.completed = Some(now);
            o.outcome = outcome;
        }
    }

    pub fn fault(&self, what: impl Into<String>) {
        let at = self.start.elapsed();
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Fault {
                at,
                what: what.into(),
            });
    }

    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn faults(&self) -> Vec<Fault> {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
