//! The publish hooks: `dedup-key`, then `route`, on the chains of the stream a message was
//! published to; then `residency` on the chains of each stream it would be stored in.
//!
//! - `dedup-key`: a key replaces the message's id, so the stream's dedup index (and the
//!   ack's `id`) use it; `none` keeps the producer's id.
//! - `route`: `keep`; `to` stores a copy under each subject (each must be bound to a
//!   stream; the first copy keeps the id, copy `n` gets `<id>#<n>` so a retry dedups every
//!   copy); `reject` refuses the message (`rejected`, with the plugin's reason); `drop`
//!   acks it with an empty stream and sequence 0 and stores nothing.
//! - `residency` at publish is the hop from this region to itself: a message whose allowed
//!   set excludes this region is refused (`rejected`); it is never stored here.
//!
//! A chain that fails under fallback `reject` refuses its whole call batch
//! (`plugin_failed`, retryable). Chains run on the blocking pool: a call may take up to its
//! deadline.

use std::collections::BTreeMap;
use std::sync::Arc;

use tern_plugin::types::{Allowed, Message, Routing};
use tern_plugin::{Chain, HookKind, Refusal};
use tern_proto::{ErrorBody, ErrorCode, PubMessage};
use tern_store::Store;

use super::Plugins;

/// Most messages handed to one guest call.
const CALL_BATCH_MAX: usize = 1024;

/// What became of one published message.
pub(crate) enum Slot {
    /// Stored as this many copies (the next results of the append, in order).
    Stored(usize),
    /// Acked without storing (a route plugin said `drop`); carries the message's id.
    Dropped(String),
    Refused(ErrorBody),
}

/// The pipeline's answer for a batch: the messages to append, and one slot per input.
pub(crate) struct Outcome {
    pub to_store: Vec<PubMessage>,
    pub slots: Vec<Slot>,
}

enum Decision {
    Keep,
    To(Vec<String>),
    Drop,
    Refuse(ErrorBody),
}

/// Runs the hooks over `msgs` on the blocking pool.
pub(crate) async fn run(plugins: &Arc<Plugins>, store: &Store, msgs: Vec<PubMessage>) -> Outcome {
    let n = msgs.len();
    let (p, s) = (plugins.clone(), store.clone());
    match tokio::task::spawn_blocking(move || apply(&p, &s, msgs)).await {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::error!(error = %e, "plugin pipeline task failed");
            Outcome {
                to_store: Vec::new(),
                slots: (0..n)
                    .map(|_| Slot::Refused(error(ErrorCode::Internal, "plugin pipeline failed")))
                    .collect(),
            }
        }
    }
}

fn apply(plugins: &Plugins, store: &Store, mut msgs: Vec<PubMessage>) -> Outcome {
    let registry = plugins.registry();
    let n = msgs.len();
    let mut decisions: Vec<Decision> = (0..n).map(|_| Decision::Keep).collect();
    let mut streams = Streams::new(store);
    // Each message as the source hooks saw it (their dedup keys applied), for the
    // residency hooks to take instead of building it again.
    let mut seen: Vec<Option<Message>> = (0..n).map(|_| None).collect();

    // The stream of each published subject, looked up once.
    let sources: Vec<Option<usize>> = msgs.iter().map(|m| streams.of(&m.subject)).collect();
    let mut by_stream: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, source) in sources.iter().enumerate() {
        if let Some(stream) = source {
            by_stream.entry(*stream).or_default().push(i);
        }
    }
    for (&stream, idx) in &by_stream {
        let dedup = registry.chain(streams.name(stream), HookKind::DedupKey);
        let route = registry.chain(streams.name(stream), HookKind::Route);
        if dedup.is_empty() && route.is_empty() {
            continue;
        }
        for chunk in idx.chunks(CALL_BATCH_MAX) {
            let batch = source_hooks(&dedup, &route, chunk, &mut msgs, &mut decisions);
            for (&i, m) in chunk.iter().zip(batch) {
                seen[i] = Some(m);
            }
        }
    }

    // Where each message would be stored: (message, subject: none for its own), grouped
    // by stream.
    let mut copies: Vec<(usize, Option<String>)> = Vec::new();
    let mut by_dest: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, decision) in decisions.iter_mut().enumerate() {
        let subjects = match decision {
            Decision::Keep => {
                // Its own subject, whose stream is known; without one, the store answers
                // as it does for any publish.
                if let Some(stream) = sources[i] {
                    by_dest.entry(stream).or_default().push(copies.len());
                }
                copies.push((i, None));
                continue;
            }
            Decision::To(subjects) => std::mem::take(subjects),
            Decision::Drop | Decision::Refuse(_) => continue,
        };
        let mut refusal = None;
        for subject in subjects {
            if let Err(e) = tern_proto::subject::validate_subject(&subject) {
                refusal = Some(error(
                    ErrorCode::InvalidSubject,
                    format!("route target `{subject}`: {e}"),
                ));
                break;
            }
            let Some(stream) = streams.of(&subject) else {
                refusal = Some(error(
                    ErrorCode::NoStream,
                    format!("no stream is bound to subject `{subject}`"),
                ));
                break;
            };
            by_dest.entry(stream).or_default().push(copies.len());
            copies.push((i, Some(subject)));
        }
        if let Some(e) = refusal {
            // Copies already listed stay in `copies` but are skipped: the message is refused.
            *decision = Decision::Refuse(e);
        }
    }

    let hop = plugins.local_hop();
    for (&stream, cidx) in &by_dest {
        let stream = streams.name(stream);
        let chain = registry.chain(stream, HookKind::Residency);
        if chain.is_empty() {
            continue;
        }
        for chunk in cidx.chunks(CALL_BATCH_MAX) {
            let live: Vec<usize> = chunk
                .iter()
                .copied()
                .filter(|&c| !matches!(decisions[copies[c].0], Decision::Refuse(_)))
                .collect();
            if live.is_empty() {
                continue;
            }
            let batch: Vec<Message> = live
                .iter()
                .map(|&c| match &copies[c] {
                    // A message kept on its own subject has one copy: it takes what the
                    // source hooks saw.
                    (i, None) => seen[*i]
                        .take()
                        .unwrap_or_else(|| wit_message(&msgs[*i], None)),
                    (i, Some(subject)) => wit_message(&msgs[*i], Some(subject)),
                })
                .collect();
            let payloads: Vec<&[u8]> = if chain.reads_payload() {
                live.iter()
                    .map(|&c| &msgs[copies[c].0].payload[..])
                    .collect()
            } else {
                Vec::new()
            };
            match chain.residency(hop, &batch, &payloads) {
                Ok(allowed) => {
                    for (&c, a) in live.iter().zip(allowed) {
                        if let Allowed::Only(regions) = a {
                            if !regions.contains(&hop.source) {
                                decisions[copies[c].0] = Decision::Refuse(error(
                                    ErrorCode::Rejected,
                                    format!(
                                        "residency: region `{}` may not hold this message on \
                                         stream `{stream}` (allowed: {})",
                                        hop.source,
                                        if regions.is_empty() {
                                            "none".to_string()
                                        } else {
                                            regions.join(", ")
                                        }
                                    ),
                                ));
                            }
                        }
                    }
                }
                Err(refusal) => {
                    for &c in &live {
                        decisions[copies[c].0] = Decision::Refuse(failed(&refusal));
                    }
                }
            }
        }
    }

    let mut to_store = Vec::with_capacity(copies.len());
    let mut slots = Vec::with_capacity(n);
    let mut next_copy = copies.into_iter().peekable();
    for (i, (m, decision)) in msgs.into_iter().zip(decisions).enumerate() {
        let mut mine = std::iter::from_fn(|| next_copy.next_if(|(ci, _)| *ci == i))
            .map(|(_, subject)| subject)
            .peekable();
        slots.push(match decision {
            Decision::Refuse(e) => Slot::Refused(e),
            Decision::Drop => Slot::Dropped(m.id.unwrap_or_default()),
            Decision::Keep | Decision::To(_) => {
                let (mut m, mut count) = (Some(m), 0);
                while let Some(subject) = mine.next() {
                    // The last copy takes the message itself; the others clone it.
                    let last = mine.peek().is_none();
                    let Some(mut copy) = (if last { m.take() } else { m.clone() }) else {
                        break;
                    };
                    if let Some(subject) = subject {
                        copy.subject = subject;
                    }
                    if count > 0 {
                        copy.id = copy.id.map(|id| format!("{id}#{count}"));
                    }
                    to_store.push(copy);
                    count += 1;
                }
                Slot::Stored(count)
            }
        });
        // The copies of a refused message.
        mine.for_each(drop);
    }
    Outcome { to_store, slots }
}

/// The streams a batch's subjects are bound to, each name held once; the last subject's
/// stream is remembered, since a batch's messages mostly share their subject.
struct Streams<'s> {
    store: &'s Store,
    names: Vec<String>,
    last: Option<(String, Option<usize>)>,
}

impl<'s> Streams<'s> {
    fn new(store: &'s Store) -> Self {
        Self {
            store,
            names: Vec::new(),
            last: None,
        }
    }

    /// The stream bound to `subject`, as an index for [`Streams::name`].
    fn of(&mut self, subject: &str) -> Option<usize> {
        if let Some((s, stream)) = &self.last {
            if s == subject {
                return *stream;
            }
        }
        let stream = self.store.stream_for_subject(subject).map(|name| {
            match self.names.iter().position(|n| *n == name) {
                Some(i) => i,
                None => {
                    self.names.push(name);
                    self.names.len() - 1
                }
            }
        });
        self.last = Some((subject.to_owned(), stream));
        stream
    }

    fn name(&self, stream: usize) -> &str {
        &self.names[stream]
    }
}

/// `dedup-key` then `route` for one call batch of one stream; returns the messages as the
/// hooks saw them, in `idx` order.
fn source_hooks(
    dedup: &Chain,
    route: &Chain,
    idx: &[usize],
    msgs: &mut [PubMessage],
    decisions: &mut [Decision],
) -> Vec<Message> {
    let mut batch: Vec<Message> = idx.iter().map(|&i| wit_message(&msgs[i], None)).collect();
    if !dedup.is_empty() {
        let keys = {
            let payloads = payloads_for(dedup, idx, msgs);
            dedup.dedup_key(&batch, &payloads)
        };
        match keys {
            Ok(keys) => {
                for ((j, &i), key) in idx.iter().enumerate().zip(keys) {
                    if let Some(key) = key {
                        batch[j].id.clone_from(&key);
                        msgs[i].id = Some(key);
                    }
                }
            }
            Err(refusal) => {
                for &i in idx {
                    decisions[i] = Decision::Refuse(failed(&refusal));
                }
                return batch;
            }
        }
    }
    if !route.is_empty() {
        let routes = {
            let payloads = payloads_for(route, idx, msgs);
            route.route(&batch, &payloads)
        };
        match routes {
            Ok(routes) => {
                for (&i, r) in idx.iter().zip(routes) {
                    decisions[i] = match r {
                        Routing::Keep => Decision::Keep,
                        Routing::To(subjects) => Decision::To(subjects),
                        Routing::Drop => Decision::Drop,
                        Routing::Reject(reason) => Decision::Refuse(error(
                            ErrorCode::Rejected,
                            format!("refused by a route plugin: {reason}"),
                        )),
                    };
                }
            }
            Err(refusal) => {
                for &i in idx {
                    decisions[i] = Decision::Refuse(failed(&refusal));
                }
            }
        }
    }
    batch
}

fn payloads_for<'m>(chain: &Chain, idx: &[usize], msgs: &'m [PubMessage]) -> Vec<&'m [u8]> {
    if chain.reads_payload() {
        idx.iter().map(|&i| &msgs[i].payload[..]).collect()
    } else {
        Vec::new()
    }
}

/// A message as hooks see it; `subject` overrides the published one (a route target).
fn wit_message(m: &PubMessage, subject: Option<&str>) -> Message {
    Message::new(
        subject.unwrap_or(&m.subject),
        m.id.as_deref().unwrap_or_default(),
        m.key.as_deref(),
        m.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        m.payload.len(),
    )
}

fn failed(refusal: &Refusal) -> ErrorBody {
    error(ErrorCode::PluginFailed, refusal.to_string())
}

fn error(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
    ErrorBody {
        code,
        message: message.into(),
    }
}
