//! The versions index, and the conflicts a merge finds with it.
//!
//! Every stored message with a key is one version of that key, numbered by its key_seq.
//! The index ([`VERSIONS`](crate::tables::VERSIONS)) maps (stream, key, key_seq) to the
//! version's origin, origin_seq, hlc and local sequence (records.rs), for the newest
//! [`VERSIONS_PER_KEY`] versions of each key: a key's rows always lie in `(top - 64, top]`,
//! where `top` is its highest key_seq (the KEYS table). An append, which makes version
//! `top + 1`, costs one insert and one removal (of version `top + 1 - 64`); a merged version
//! that jumps ahead removes every row that falls out of the window; one older than the
//! window is not indexed. So the index holds at most 64 rows per key, and a conflict with a
//! version more than 64 versions older than the key's newest goes undetected. Versions
//! stored before the index existed (an older file, or a snapshot of an older version) are
//! not in it either. Retention does not touch the index: a row may name a message that was
//! purged since ([`crate::Store::version`] then answers `None`).
//!
//! A **conflict** is two versions of one key with the same key_seq from different origins:
//! two regions wrote the next version of the key concurrently. When a merge stores a
//! message whose version the index holds from another origin, it decides a winner the same
//! way in every region: the origin the caller names for that version (its `resolve`
//! plugins' verdict, [`crate::Decided`]) if it names one of the two, else the greater
//! `(hlc, origin)`. Both messages stay stored; the index keeps the winner, so a third
//! region's version is compared with it; and a conflict record (see [`record`]) is
//! appended, in the same commit, to the stream bound to `$conflict.<stream>`, which is
//! `<stream>-conflicts` (created by the merge when no stream takes that subject).

use std::collections::BTreeMap;

use bytes::Bytes;
use redb::{ReadableTable, Table};
use tern_proto::limits::NAME_BYTES_MAX;
use tern_proto::{subject, PubMessage, StreamConfig};

use crate::error::StoreError;
use crate::records::{self, StreamRecord, VersionRecord};
use crate::Decided;

/// Versions of one key the index keeps: the newest 64.
pub(crate) const VERSIONS_PER_KEY: u64 = 64;

/// The versions index as tern-store opens it.
pub(crate) type VersionsTable<'t> = Table<'t, (u32, &'static str, u64), &'static [u8]>;

/// Header of a conflict record: the stream the conflict is in.
pub(crate) const HEADER_STREAM: &str = "tern-conflict-stream";
/// Header of a conflict record: the key_seq both versions have.
pub(crate) const HEADER_KEY_SEQ: &str = "tern-conflict-key-seq";
/// Header of a conflict record: the winning version, `<origin>/<origin_seq>`.
pub(crate) const HEADER_WINNER: &str = "tern-conflict-winner";
/// Header of a conflict record: the winner's local sequence in the stream, here.
pub(crate) const HEADER_WINNER_SEQ: &str = "tern-conflict-winner-seq";
/// Header of a conflict record: the losing version, `<origin>/<origin_seq>`.
pub(crate) const HEADER_LOSER: &str = "tern-conflict-loser";
/// Header of a conflict record: the loser's local sequence in the stream, here.
pub(crate) const HEADER_LOSER_SEQ: &str = "tern-conflict-loser-seq";
/// Header of a conflict record: `resolver` or `default-order`.
pub(crate) const HEADER_DECIDED_BY: &str = "tern-conflict-decided-by";

/// Indexes version `key_seq` of `key` in stream `sid`, when it is the key's next version
/// (one above its top, as an append makes it); `value` is its encoded record. The window
/// moves by one: version `key_seq - 64` is the only row that falls out of it.
pub(crate) fn index_next(
    table: &mut VersionsTable<'_>,
    sid: u32,
    key: &str,
    key_seq: u64,
    value: &[u8],
) -> Result<(), StoreError> {
    table.insert((sid, key, key_seq), value)?;
    if let Some(old) = key_seq.checked_sub(VERSIONS_PER_KEY) {
        table.remove((sid, key, old))?;
    }
    Ok(())
}

/// The version the index holds for version `key_seq` of `key` in stream `sid`.
pub(crate) fn held(
    table: &impl ReadableTable<(u32, &'static str, u64), &'static [u8]>,
    sid: u32,
    key: &str,
    key_seq: u64,
) -> Result<Option<VersionRecord>, StoreError> {
    match table.get((sid, key, key_seq))? {
        Some(v) => Ok(Some(records::decode_version(v.value())?)),
        None => Ok(None),
    }
}

/// The caller's decisions for one merge, by version.
pub(crate) struct Decisions<'a>(BTreeMap<(&'a str, u64), Vec<&'a str>>);

impl<'a> Decisions<'a> {
    pub(crate) fn new(winners: &'a [Decided]) -> Decisions<'a> {
        let mut by_version: BTreeMap<(&str, u64), Vec<&str>> = BTreeMap::new();
        for d in winners {
            by_version
                .entry((d.key.as_str(), d.key_seq))
                .or_default()
                .push(d.origin.as_str());
        }
        Decisions(by_version)
    }

    /// The first origin named for version `key_seq` of `key` that is `a` or `b`.
    fn named(&self, key: &str, key_seq: u64, a: &str, b: &str) -> Option<&'a str> {
        self.0
            .get(&(key, key_seq))?
            .iter()
            .copied()
            .find(|o| *o == a || *o == b)
    }
}

/// A conflict a merge found: two versions of `key` at `key_seq`, from different origins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Conflict {
    pub key: String,
    pub key_seq: u64,
    pub winner: VersionRecord,
    pub loser: VersionRecord,
    /// The caller's decision chose the winner, not the default order.
    pub by_resolver: bool,
}

/// Which of `held` and `incoming` (two versions of one key, same key_seq, different
/// origins) wins: the origin `named`, if it is one of theirs; else the greater
/// `(hlc, origin)`, which every region computes alike. Returns (winner, loser, whether
/// `named` decided).
fn decide(
    held: VersionRecord,
    incoming: VersionRecord,
    named: Option<&str>,
) -> (VersionRecord, VersionRecord, bool) {
    match named {
        Some(o) if o == incoming.origin => (incoming, held, true),
        Some(o) if o == held.origin => (held, incoming, true),
        _ if (incoming.hlc, &incoming.origin) > (held.hlc, &held.origin) => (incoming, held, false),
        _ => (held, incoming, false),
    }
}

/// A merged version about to be indexed: version `key_seq` of `key`, from `origin`, stored
/// here at `local_seq`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Incoming<'a> {
    pub key: &'a str,
    pub key_seq: u64,
    pub origin: &'a str,
    pub origin_seq: u64,
    pub hlc: u64,
    pub local_seq: u64,
}

impl Incoming<'_> {
    fn to_record(self) -> VersionRecord {
        VersionRecord {
            origin: self.origin.to_owned(),
            origin_seq: self.origin_seq,
            hlc: self.hlc,
            local_seq: self.local_seq,
        }
    }
}

/// Indexes merged version `v` of stream `sid`, whose key's highest key_seq was `top`
/// before it. Returns the conflict when the index holds that version from another origin
/// (the index then keeps the winner). A version of the same origin is no conflict and
/// leaves the row as it is. `buf` is scratch space for the record.
pub(crate) fn index_merged(
    table: &mut VersionsTable<'_>,
    sid: u32,
    top: u64,
    v: Incoming<'_>,
    decisions: &Decisions<'_>,
    buf: &mut Vec<u8>,
) -> Result<Option<Conflict>, StoreError> {
    let (key, key_seq) = (v.key, v.key_seq);
    if key_seq.saturating_add(VERSIONS_PER_KEY) <= top {
        // Older than the window: not indexed, so not compared either.
        return Ok(None);
    }
    let Some(held) = held(table, sid, key, key_seq)? else {
        records::encode_version(buf, v.origin, v.origin_seq, v.hlc, v.local_seq);
        table.insert((sid, key, key_seq), buf.as_slice())?;
        if key_seq > top {
            // The window moves up to this version: rows at or below key_seq - 64 leave it,
            // and every row of the key lies above top - 64.
            if let Some(hi) = key_seq.checked_sub(VERSIONS_PER_KEY) {
                let lo = (top + 1).saturating_sub(VERSIONS_PER_KEY);
                if lo == hi {
                    table.remove((sid, key, hi))?;
                } else if lo < hi {
                    table.retain_in((sid, key, lo)..=(sid, key, hi), |_, _| false)?;
                }
            }
        }
        return Ok(None);
    };
    if held.origin == v.origin {
        return Ok(None);
    }
    let named = decisions.named(key, key_seq, &held.origin, v.origin);
    let (winner, loser, by_resolver) = decide(held, v.to_record(), named);
    if winner.origin == v.origin {
        records::encode_version(buf, v.origin, v.origin_seq, v.hlc, v.local_seq);
        table.insert((sid, key, key_seq), buf.as_slice())?;
    }
    Ok(Some(Conflict {
        key: key.to_owned(),
        key_seq,
        winner,
        loser,
        by_resolver,
    }))
}

/// The subject conflict records of `stream` are appended to.
pub(crate) fn conflict_subject(stream: &str) -> String {
    format!("$conflict.{stream}")
}

/// Where the conflict records of a stream go.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A stream takes the conflict subject already.
    Bound,
    /// No stream does: this one (`<stream>-conflicts`) is to be created.
    Create(StreamConfig),
}

/// Where the conflict records of `stream` go, or why they cannot be stored: the stream
/// `<stream>-conflicts` cannot be created (its name is too long, or a stream of that name
/// takes other subjects).
pub(crate) fn target(
    stream: &str,
    streams: &BTreeMap<String, StreamRecord>,
) -> Result<Target, String> {
    let subject = conflict_subject(stream);
    if streams.values().any(|r| {
        r.config
            .subjects
            .iter()
            .any(|f| subject::matches(f, &subject))
    }) {
        return Ok(Target::Bound);
    }
    let name = format!("{stream}-conflicts");
    if let Err(e) = subject::validate_name("stream name", &name) {
        return Err(format!("the conflict stream cannot be created: {e}"));
    }
    if streams.contains_key(&name) {
        return Err(format!(
            "stream {name:?} exists and does not take subject {subject:?}"
        ));
    }
    Ok(Target::Create(StreamConfig {
        name,
        subjects: vec![subject],
        ..StreamConfig::default()
    }))
}

/// The longest prefix of `s` of at most `bytes_max` bytes that ends on a char boundary.
fn prefix(s: &str, bytes_max: usize) -> &str {
    if s.len() <= bytes_max {
        return s;
    }
    let mut end = bytes_max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The conflict record of `c` in `stream`: a message to `$conflict.<stream>`, keyed by the
/// conflict's key, with an empty payload and the conflict in its headers. Its id,
/// `conflict:<stream>:<key>:<key_seq>:<loser origin>:<loser origin_seq>`, is the same in
/// every region, so recording a conflict again is a duplicate. (A version loses once at
/// most, so the loser alone tells conflicts apart: a key too long for the id to stay within
/// the protocol's [`NAME_BYTES_MAX`] is cut short in it.)
pub(crate) fn record(stream: &str, c: &Conflict) -> PubMessage {
    let head = format!("conflict:{stream}:");
    let tail = format!(":{}:{}:{}", c.key_seq, c.loser.origin, c.loser.origin_seq);
    let room = NAME_BYTES_MAX.saturating_sub(head.len() + tail.len());
    let id = format!("{head}{}{tail}", prefix(&c.key, room));
    let version = |v: &VersionRecord| format!("{}/{}", v.origin, v.origin_seq);
    let decided_by = if c.by_resolver {
        "resolver"
    } else {
        "default-order"
    };
    PubMessage {
        subject: conflict_subject(stream),
        id: Some(id),
        key: Some(c.key.clone()),
        headers: vec![
            (HEADER_STREAM.into(), stream.into()),
            (HEADER_KEY_SEQ.into(), c.key_seq.to_string()),
            (HEADER_WINNER.into(), version(&c.winner)),
            (HEADER_WINNER_SEQ.into(), c.winner.local_seq.to_string()),
            (HEADER_LOSER.into(), version(&c.loser)),
            (HEADER_LOSER_SEQ.into(), c.loser.local_seq.to_string()),
            (HEADER_DECIDED_BY.into(), decided_by.into()),
        ],
        payload: Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(origin: &str, hlc: u64) -> VersionRecord {
        VersionRecord {
            origin: origin.into(),
            origin_seq: 1,
            hlc,
            local_seq: 1,
        }
    }

    #[test]
    fn the_default_order_is_hlc_then_origin_and_a_named_origin_overrides_it() {
        let order = |a: VersionRecord, b: VersionRecord, named: Option<&str>| {
            let (w, _, by) = decide(a, b, named);
            (w.origin, by)
        };
        let eu = || v("eu", 5);
        let us = || v("us", 9);
        assert_eq!(order(eu(), us(), None), ("us".into(), false));
        assert_eq!(order(us(), eu(), None), ("us".into(), false));
        // Equal clocks: the greater origin.
        assert_eq!(order(v("eu", 9), us(), None), ("us".into(), false));
        assert_eq!(order(us(), v("eu", 9), None), ("us".into(), false));
        assert_eq!(order(eu(), us(), Some("eu")), ("eu".into(), true));
        assert_eq!(order(us(), eu(), Some("eu")), ("eu".into(), true));
        // A name that is neither's leaves the default order.
        assert_eq!(order(eu(), us(), Some("ap")), ("us".into(), false));
    }

    #[test]
    fn decisions_name_the_first_origin_of_either_version() {
        let d = |key: &str, key_seq, origin: &str| Decided {
            key: key.into(),
            key_seq,
            origin: origin.into(),
        };
        let winners = [
            d("k", 1, "ap"),
            d("k", 1, "us"),
            d("k", 1, "eu"),
            d("j", 2, "eu"),
        ];
        let ds = Decisions::new(&winners);
        assert_eq!(ds.named("k", 1, "eu", "us"), Some("us"));
        assert_eq!(ds.named("k", 1, "eu", "ap"), Some("ap"));
        assert_eq!(ds.named("k", 2, "eu", "us"), None);
        assert_eq!(ds.named("j", 2, "us", "ap"), None);
    }

    #[test]
    fn a_record_id_stays_within_the_protocol_limit() {
        let c = |key: String| Conflict {
            key,
            key_seq: 3,
            winner: v("eu", 1),
            loser: VersionRecord {
                origin_seq: 44,
                ..v("us", 2)
            },
            by_resolver: false,
        };
        let short = record("orders", &c("k:1".into()));
        assert_eq!(short.id.as_deref(), Some("conflict:orders:k:1:3:us:44"));
        assert_eq!(short.subject, "$conflict.orders");
        // A long key of two-byte chars is cut on a char boundary.
        let long = record("orders", &c("é".repeat(2000)));
        let id = long.id.unwrap();
        assert!(id.len() <= NAME_BYTES_MAX, "{}", id.len());
        assert!(id.len() >= NAME_BYTES_MAX - 1, "{}", id.len());
        assert!(id.starts_with("conflict:orders:éé") && id.ends_with(":3:us:44"));
        assert_eq!(long.key.unwrap().len(), 4000);
    }
}
