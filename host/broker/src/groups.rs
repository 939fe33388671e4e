//! Consumer groups: the in-memory delivery state of each active group, shared by its
//! members on this node, over the durable state in storage (ack floor, acked and
//! redelivered rows above it).
//!
//! Durable: every sequence below `floor` is acked (or dead-lettered, or filtered out);
//! rows above the floor record out-of-order acks and delivery counts of redeliveries.
//! In memory: what is in flight to which member, and when it is due again. After a
//! restart everything above the floor that is not acked is delivered again.
//!
//! In a region a group's state lives on the leader. What a node holds in memory is good
//! only for the term it was loaded in: another leader may have moved the group on since.
//! So the state records its term, members stop on a node that no longer leads that term,
//! and a join in a later term loads the group again from storage.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tern_proto::{subject, PubMessage, StartPosition};
use tern_store::{GroupUpdate, PendingRow, Store, StoreError, StoredMessage};
use tokio::sync::Mutex;

/// Dead-letter stream of `stream`.
pub(crate) fn dlq_stream(stream: &str) -> String {
    format!("{stream}-dlq")
}

/// Subject a group's dead letters are published to.
pub(crate) fn dlq_subject(stream: &str, group: &str) -> String {
    format!("$dlq.{stream}.{group}")
}

#[derive(Debug, Clone, Copy)]
struct Inflight {
    deliveries: u32,
    due_ms: u64,
    member: u64,
}

pub(crate) struct GroupState {
    stream: String,
    name: String,
    filter: String,
    ack_wait_ms: u64,
    max_deliveries: u32,
    floor: u64,
    next_fresh: u64,
    /// Messages from `next_fresh` on, read with their whole chunk and not yet delivered (at
    /// most the rest of one chunk): each chunk is read from storage once.
    fresh: std::collections::VecDeque<StoredMessage>,
    inflight: BTreeMap<u64, Inflight>,
    /// Durable rows above the floor.
    above: BTreeMap<u64, PendingRow>,
    next_member: u64,
    /// The region term the state was loaded in (0 for a node on its own).
    term: u64,
}

/// A group shared by its members on this node.
pub(crate) type SharedGroup = Arc<Mutex<GroupState>>;

/// Active groups of this node, by (stream, group).
#[derive(Default)]
pub(crate) struct Groups {
    map: Mutex<HashMap<(String, String), SharedGroup>>,
}

/// Settings a member asks for when joining.
pub(crate) struct JoinRequest<'a> {
    pub stream: &'a str,
    pub group: &'a str,
    pub filter: &'a str,
    pub ack_wait_ms: u32,
    pub max_deliveries: u32,
    pub start: StartPosition,
}

impl Groups {
    /// Join a group (opening it durably on first use); returns the state and a member id.
    /// `term` is the region term this node leads (see the module comment).
    pub(crate) async fn join(
        &self,
        store: &Store,
        req: JoinRequest<'_>,
        term: u64,
    ) -> Result<(SharedGroup, u64), StoreError> {
        let key = (req.stream.to_owned(), req.group.to_owned());
        let mut map = self.map.lock().await;
        if let Some(g) = map.get(&key) {
            let mut st = g.lock().await;
            if st.term == term {
                if st.filter != req.filter {
                    return Err(StoreError::GroupMismatch(req.group.to_owned()));
                }
                st.next_member += 1;
                return Ok((g.clone(), st.next_member));
            }
            // Loaded under an earlier leadership: its members stop by themselves.
        }
        let dlq = tern_proto::StreamConfig {
            name: dlq_stream(req.stream),
            subjects: vec![format!("$dlq.{}.>", req.stream)],
            ..Default::default()
        };
        if let Err(e) = store.create_stream(dlq).await {
            tracing::warn!(stream = req.stream, error = %e, "cannot create the dead-letter stream");
        }
        let (rec, rows) = store
            .open_group(
                req.stream,
                req.group,
                req.filter,
                req.ack_wait_ms,
                req.max_deliveries,
                req.start,
            )
            .await?;
        let state = GroupState {
            stream: req.stream.to_owned(),
            name: req.group.to_owned(),
            filter: rec.filter,
            ack_wait_ms: u64::from(rec.ack_wait_ms),
            max_deliveries: rec.max_deliveries.max(1),
            floor: rec.cursor,
            next_fresh: rec.cursor,
            fresh: Default::default(),
            inflight: BTreeMap::new(),
            above: rows.into_iter().map(|r| (r.seq, r)).collect(),
            next_member: 1,
            term,
        };
        let g = Arc::new(Mutex::new(state));
        map.insert(key, g.clone());
        Ok((g, 1))
    }

    /// Drop the in-memory state of a stream's groups (the stream is being removed).
    pub(crate) async fn forget_stream(&self, stream: &str) {
        self.map.lock().await.retain(|(s, _), _| s != stream);
    }
}

impl GroupState {
    fn update(&self) -> GroupUpdate {
        GroupUpdate {
            stream: self.stream.clone(),
            group: self.name.clone(),
            ..GroupUpdate::default()
        }
    }

    /// Move the floor over every sequence that is done; returns whether it moved.
    fn advance_floor(&mut self) -> bool {
        let start = self.floor;
        while self.floor < self.next_fresh {
            if self.inflight.contains_key(&self.floor) {
                break;
            }
            match self.above.get(&self.floor) {
                Some(r) if !r.acked => break,
                _ => self.floor += 1,
            }
        }
        if self.floor != start {
            self.above = self.above.split_off(&self.floor);
            true
        } else {
            false
        }
    }

    fn dead_letter(&self, m: &StoredMessage, reason: &str) -> PubMessage {
        let mut headers = m.headers.clone();
        headers.push(("tern-dlq-reason".into(), reason.into()));
        headers.push(("tern-dlq-stream".into(), self.stream.clone()));
        headers.push(("tern-dlq-group".into(), self.name.clone()));
        headers.push(("tern-dlq-seq".into(), m.seq.to_string()));
        headers.push(("tern-dlq-subject".into(), m.subject.clone()));
        PubMessage {
            subject: dlq_subject(&self.stream, &self.name),
            // Deterministic, so a retried dead-lettering is deduplicated.
            id: Some(format!("dlq:{}:{}:{}", self.stream, self.name, m.seq)),
            key: m.key.clone(),
            headers,
            payload: m.payload.clone(),
        }
    }

    /// Hand out up to `max` messages to `member`: due redeliveries first, then new ones.
    /// Messages past max deliveries go to the dead-letter stream instead. State changes
    /// are durable before anything is returned.
    pub(crate) async fn claim(
        &mut self,
        store: &Store,
        member: u64,
        now_ms: u64,
        max: usize,
        read_batch: usize,
    ) -> Result<Vec<(StoredMessage, u32)>, StoreError> {
        let mut out = Vec::new();
        let mut upd = self.update();
        let due: Vec<u64> = self
            .inflight
            .iter()
            .filter(|(_, i)| i.due_ms <= now_ms)
            .map(|(s, _)| *s)
            .take(max)
            .collect();
        for seq in due {
            let Some(inf) = self.inflight.get(&seq).copied() else {
                continue;
            };
            match store.get(&self.stream, seq)? {
                None => {
                    // Purged by retention: nothing left to deliver.
                    self.inflight.remove(&seq);
                }
                Some(m) if inf.deliveries >= self.max_deliveries => {
                    tracing::info!(stream = %self.stream, group = %self.name, seq, deliveries = inf.deliveries, "dead-lettering");
                    upd.dead_letters
                        .push(self.dead_letter(&m, "max_deliveries"));
                    self.inflight.remove(&seq);
                    self.mark_acked(seq, &mut upd);
                }
                Some(m) => {
                    let d = inf.deliveries + 1;
                    self.inflight.insert(
                        seq,
                        Inflight {
                            deliveries: d,
                            due_ms: now_ms + self.ack_wait_ms,
                            member,
                        },
                    );
                    let row = PendingRow {
                        seq,
                        deliveries: d,
                        acked: false,
                    };
                    self.above.insert(seq, row);
                    upd.upsert.push(row);
                    out.push((m, d));
                }
            }
        }
        while out.len() < max {
            if self.fresh.is_empty() {
                let want = (max - out.len()).min(read_batch);
                let msgs = store.read_chunks(
                    &self.stream,
                    self.next_fresh,
                    want,
                    crate::consumer::READ_BYTES_MAX,
                )?;
                if msgs.is_empty() {
                    break;
                }
                self.fresh.extend(msgs);
            }
            let Some(m) = self.fresh.pop_front() else {
                break;
            };
            self.next_fresh = m.seq + 1;
            if !subject::matches(&self.filter, &m.subject) {
                continue;
            }
            let prior = self.above.get(&m.seq).copied();
            if prior.is_some_and(|r| r.acked) {
                continue;
            }
            let d = prior.map_or(0, |r| r.deliveries) + 1;
            if d > self.max_deliveries {
                upd.dead_letters
                    .push(self.dead_letter(&m, "max_deliveries"));
                self.mark_acked(m.seq, &mut upd);
                continue;
            }
            self.inflight.insert(
                m.seq,
                Inflight {
                    deliveries: d,
                    due_ms: now_ms + self.ack_wait_ms,
                    member,
                },
            );
            out.push((m, d));
        }
        if self.advance_floor() {
            upd.cursor = Some(self.floor);
        }
        self.commit(store, upd).await?;
        Ok(out)
    }

    fn mark_acked(&mut self, seq: u64, upd: &mut GroupUpdate) {
        if seq < self.floor {
            return;
        }
        let d = self.above.get(&seq).map_or(1, |r| r.deliveries);
        let row = PendingRow {
            seq,
            deliveries: d,
            acked: true,
        };
        self.above.insert(seq, row);
        upd.upsert.push(row);
    }

    async fn commit(&mut self, store: &Store, upd: GroupUpdate) -> Result<(), StoreError> {
        if upd.cursor.is_none() && upd.upsert.is_empty() && upd.dead_letters.is_empty() {
            return Ok(());
        }
        store.update_group(upd).await
    }

    /// Durably ack delivered messages; unknown or already acked sequences are ignored.
    pub(crate) async fn ack(&mut self, store: &Store, seqs: &[u64]) -> Result<(), StoreError> {
        let mut upd = self.update();
        for &seq in seqs {
            if seq < self.floor || seq >= self.next_fresh {
                continue;
            }
            self.inflight.remove(&seq);
            self.mark_acked(seq, &mut upd);
        }
        if self.advance_floor() {
            upd.cursor = Some(self.floor);
            upd.upsert.retain(|r| r.seq >= self.floor);
        }
        self.commit(store, upd).await
    }

    /// Make a delivered message due again after `delay_ms`.
    pub(crate) fn nack(&mut self, seq: u64, delay_ms: u32, now_ms: u64) {
        if let Some(i) = self.inflight.get_mut(&seq) {
            i.due_ms = now_ms + u64::from(delay_ms);
        }
    }

    /// A member left: what it held is due at once for the others.
    pub(crate) fn leave(&mut self, member: u64, now_ms: u64) {
        for i in self.inflight.values_mut().filter(|i| i.member == member) {
            i.due_ms = i.due_ms.min(now_ms);
        }
    }

    /// Earliest time a redelivery becomes due.
    pub(crate) fn next_due_ms(&self) -> Option<u64> {
        self.inflight.values().map(|i| i.due_ms).min()
    }

    pub(crate) fn stream(&self) -> &str {
        &self.stream
    }

    /// The region term the state was loaded in.
    pub(crate) fn term(&self) -> u64 {
        self.term
    }
}
