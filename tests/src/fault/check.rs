//! The checker: a pure function of the history and of what each node holds after healing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use super::history::{History, Outcome};

/// One message as read back from a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub seq: u64,
    pub id: String,
    pub key: Option<String>,
}

/// What a run found. A correct run has `lost`, `duplicated`, `order_violations` and
/// `divergence` empty.
#[derive(Debug, Default)]
pub struct Report {
    pub invoked: usize,
    pub acked: usize,
    pub failed: usize,
    pub unknown: usize,
    /// Unknown publishes that were stored after all (the rest were not).
    pub unknown_stored: usize,
    /// Ids acked but held by no node, or missing from this node: `node: id`.
    pub lost: Vec<String>,
    /// Ids stored at more than one position on a node: `node: id at seqs`.
    pub duplicated: Vec<String>,
    /// Acked messages of a key read in another order than published: `node: key ...`.
    pub order_violations: Vec<String>,
    /// Nodes whose content differs from the first node's: `node: first difference`.
    pub divergence: Vec<String>,
    /// Failed publishes whose id is stored anyway (a refusal must store nothing).
    pub failed_but_stored: Vec<String>,
    /// For each fault: time from the fault until a publish started after it was acked.
    pub rto: Vec<(String, Option<Duration>)>,
    /// Acked publishes per second over the run.
    pub acked_per_sec: f64,
}

impl Report {
    /// Whether no safety property was violated.
    pub fn is_valid(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.order_violations.is_empty()
            && self.divergence.is_empty()
            && self.failed_but_stored.is_empty()
    }

    /// The longest RTO (a fault never recovered from counts as `None`, i.e. infinite).
    pub fn rto_max(&self) -> Option<Duration> {
        self.rto
            .iter()
            .map(|(_, d)| *d)
            .try_fold(Duration::ZERO, |m, d| d.map(|d| m.max(d)))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "ops {} (acked {}, failed {}, unknown {} of which stored {}), {:.0} acked/s",
            self.invoked,
            self.acked,
            self.failed,
            self.unknown,
            self.unknown_stored,
            self.acked_per_sec
        )?;
        writeln!(
            f,
            "lost {}, duplicated {}, order violations {}, divergence {}, failed but stored {}",
            self.lost.len(),
            self.duplicated.len(),
            self.order_violations.len(),
            self.divergence.len(),
            self.failed_but_stored.len()
        )?;
        for (what, rto) in &self.rto {
            match rto {
                Some(d) => writeln!(f, "RTO after {what}: {} ms", d.as_millis())?,
                None => writeln!(f, "RTO after {what}: no publish succeeded afterwards")?,
            }
        }
        let show = |f: &mut fmt::Formatter<'_>, name: &str, v: &[String]| {
            if v.is_empty() {
                return Ok(());
            }
            writeln!(f, "{name} (first 10): {:?}", &v[..v.len().min(10)])
        };
        show(f, "lost", &self.lost)?;
        show(f, "duplicated", &self.duplicated)?;
        show(f, "order", &self.order_violations)?;
        show(f, "divergence", &self.divergence)?;
        show(f, "failed but stored", &self.failed_but_stored)
    }
}

/// Checks a run: `nodes` maps each node's name to the stream's content on it, in sequence
/// order, read after healing.
pub fn check(history: &History, nodes: &BTreeMap<String, Vec<StoredMessage>>) -> Report {
    let ops = history.ops();
    let mut r = Report {
        invoked: ops.len(),
        ..Report::default()
    };
    let acked: BTreeMap<&str, &super::history::Op> = ops
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Ok { .. }))
        .map(|o| (o.id.as_str(), o))
        .collect();
    r.acked = acked.len();
    r.failed = ops
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Fail(_)))
        .count();
    r.unknown = r.invoked - r.acked - r.failed;

    let mut stored_anywhere: BTreeSet<&str> = BTreeSet::new();
    for (node, msgs) in nodes {
        let mut seqs: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for m in msgs {
            seqs.entry(m.id.as_str()).or_default().push(m.seq);
            stored_anywhere.insert(m.id.as_str());
        }
        for (id, at) in &seqs {
            if at.len() > 1 {
                r.duplicated.push(format!("{node}: {id} at {at:?}"));
            }
        }
        for id in acked.keys() {
            if !seqs.contains_key(id) {
                r.lost.push(format!("{node}: {id}"));
            }
        }
        // Per key, the acked messages' counters must grow in read order.
        let mut last: BTreeMap<&str, u64> = BTreeMap::new();
        for m in msgs {
            let Some(op) = acked.get(m.id.as_str()) else {
                continue;
            };
            if let Some(prev) = last.insert(op.key.as_str(), op.counter) {
                if prev >= op.counter {
                    r.order_violations.push(format!(
                        "{node}: key {} counter {} read after {prev}",
                        op.key, op.counter
                    ));
                }
            }
        }
    }
    r.unknown_stored = ops
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Unknown(_) | Outcome::Pending))
        .filter(|o| stored_anywhere.contains(o.id.as_str()))
        .count();
    r.failed_but_stored = ops
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Fail(_)))
        .filter(|o| stored_anywhere.contains(o.id.as_str()))
        .map(|o| format!("{} ({:?})", o.id, o.outcome))
        .collect();

    let mut reference: Option<(&String, Vec<&str>)> = None;
    for (node, msgs) in nodes {
        let ids: Vec<&str> = msgs.iter().map(|m| m.id.as_str()).collect();
        match &reference {
            None => reference = Some((node, ids)),
            Some((first, want)) => {
                if let Some(i) = (0..want.len().max(ids.len())).find(|&i| want.get(i) != ids.get(i))
                {
                    r.divergence.push(format!(
                        "{node}: position {i} holds {:?}, {first} holds {:?}",
                        ids.get(i),
                        want.get(i)
                    ));
                }
            }
        }
    }

    for fault in history.faults() {
        // Publishes started before the fault may complete just after it without saying
        // anything about recovery; count only those started after it.
        let recovered = ops
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Ok { .. }) && o.invoked >= fault.at)
            .filter_map(|o| o.completed)
            .min()
            .map(|c| c - fault.at);
        r.rto.push((fault.what, recovered));
    }
    let span = ops
        .iter()
        .filter_map(|o| o.completed)
        .max()
        .unwrap_or_default();
    if !span.is_zero() {
        r.acked_per_sec = r.acked as f64 / span.as_secs_f64();
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(seq: u64, id: &str) -> StoredMessage {
        StoredMessage {
            seq,
            id: id.into(),
            key: None,
        }
    }

    /// A history of four publishes: a (k1 #1) ok, b (k1 #2) ok, c unknown, d failed.
    fn history() -> History {
        let h = History::new();
        for (i, (id, counter)) in [("a", 1), ("b", 2), ("c", 3), ("d", 4)].iter().enumerate() {
            let op = h.invoke(0, id, "k1", *counter);
            h.complete(
                op,
                match i {
                    0 | 1 => Outcome::Ok { seq: i as u64 + 1 },
                    2 => Outcome::Unknown("timeout".into()),
                    _ => Outcome::Fail("rejected".into()),
                },
            );
        }
        h
    }

    fn nodes(contents: &[&[StoredMessage]]) -> BTreeMap<String, Vec<StoredMessage>> {
        contents
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("n{i}"), c.to_vec()))
            .collect()
    }

    #[test]
    fn a_correct_run_is_valid_and_counts_unknowns_that_landed() {
        let h = history();
        let r = check(
            &h,
            &nodes(&[&[stored(1, "a"), stored(2, "b"), stored(3, "c")]]),
        );
        assert!(r.is_valid(), "{r}");
        assert_eq!(
            (r.acked, r.failed, r.unknown, r.unknown_stored),
            (2, 1, 1, 1)
        );
    }

    #[test]
    fn each_violation_is_found() {
        let h = history();
        let lost = check(&h, &nodes(&[&[stored(1, "a")]]));
        assert_eq!(lost.lost, vec!["n0: b".to_string()]);
        let dup = check(
            &h,
            &nodes(&[&[stored(1, "a"), stored(2, "b"), stored(3, "a")]]),
        );
        assert_eq!(dup.duplicated.len(), 1);
        let order = check(&h, &nodes(&[&[stored(1, "b"), stored(2, "a")]]));
        assert_eq!(order.order_violations.len(), 1);
        let diverged = check(
            &h,
            &nodes(&[
                &[stored(1, "a"), stored(2, "b")],
                &[stored(1, "b"), stored(2, "a")],
            ]),
        );
        assert_eq!(diverged.divergence.len(), 1);
        let refused = check(
            &h,
            &nodes(&[&[stored(1, "a"), stored(2, "b"), stored(3, "d")]]),
        );
        assert_eq!(refused.failed_but_stored.len(), 1);
        for r in [lost, dup, order, diverged, refused] {
            assert!(!r.is_valid());
        }
    }

    #[test]
    fn rto_is_the_time_to_the_next_ack_after_a_fault() {
        let h = History::new();
        h.fault("kill");
        let r = check(&h, &BTreeMap::new());
        assert_eq!(r.rto.len(), 1);
        assert_eq!(r.rto[0].1, None);
        assert_eq!(r.rto_max(), None);
        let op = h.invoke(0, "a", "k", 1);
        h.complete(op, Outcome::Ok { seq: 1 });
        let r = check(&h, &BTreeMap::new());
        assert!(r.rto[0].1.is_some());
        assert!(r.rto_max().is_some());
    }
}
