//! Applying replicated log entries: every node that applies the same entries in the same
//! order ends with the same stream content, stamps included, whatever its wall clock says;
//! and a store whose changes go through a log merges, indexes versions and records
//! conflicts as a lone one does.

use std::sync::Arc;

use bytes::Bytes;
use tern_proto::{PubMessage, StreamConfig};
use tern_store::{
    Change, Decided, LogEntry, LogFuture, MergeReport, Outcome, Prepared, ReplicatedLog, Store,
    StoreOptions, StoredMessage,
};

fn open(dir: &std::path::Path, name: &str) -> Store {
    let mut opts = StoreOptions::new(dir.join(name));
    opts.origin = "eu".into();
    Store::open(opts).unwrap()
}

fn msg(id: Option<&str>, key: &str) -> Prepared {
    Prepared::new(
        PubMessage {
            subject: "orders.eu".into(),
            id: id.map(Into::into),
            key: Some(key.into()),
            headers: vec![("h".into(), "v".into())],
            payload: Bytes::from_static(b"payload"),
        },
        "eu",
    )
}

/// The entries a leader would propose: the bytes the log carries.
fn entries() -> Vec<Bytes> {
    let config = StreamConfig {
        name: "orders".into(),
        subjects: vec!["orders.>".into()],
        dedup_window_ms: 60_000,
        ..StreamConfig::default()
    };
    let day = 86_400_000;
    [
        LogEntry {
            time_ms: day,
            changes: vec![Change::CreateStream(config)],
        },
        LogEntry {
            time_ms: day + 1,
            changes: vec![Change::Append(vec![
                msg(Some("a"), "k1"),
                msg(None, "k1"),
                msg(Some("b"), "k2"),
            ])],
        },
        // A retry of "a" inside the window is a duplicate.
        LogEntry {
            time_ms: day + 2,
            changes: vec![Change::Append(vec![msg(Some("a"), "k1")])],
        },
        // Pruning as of the proposer's clock: "a" and "b" leave the dedup index ...
        LogEntry {
            time_ms: day + 120_000,
            changes: vec![Change::Purge {
                now_ms: day + 120_000,
            }],
        },
        // ... so "a" is stored again, with the next key sequence.
        LogEntry {
            time_ms: day + 120_001,
            changes: vec![Change::Append(vec![msg(Some("a"), "k1")])],
        },
    ]
    .iter()
    .map(LogEntry::encode)
    .collect()
}

async fn apply(store: &Store, entries: &[Bytes], split_at: usize) -> Vec<String> {
    let decoded =
        |r: &[Bytes]| -> Vec<LogEntry> { r.iter().map(|b| LogEntry::decode(b).unwrap()).collect() };
    // One node applies in two batches, the other in one: batching must not matter.
    let mut outcomes = Vec::new();
    for part in [&entries[..split_at], &entries[split_at..]] {
        if part.is_empty() {
            continue;
        }
        let done = store.apply_log(decoded(part), Vec::new()).await.unwrap();
        for o in done.into_iter().flatten() {
            outcomes.push(match o {
                Outcome::Append(v) => format!(
                    "{:?}",
                    v.into_iter()
                        .map(|r| r
                            .map(|rc| (rc.seq, rc.duplicate))
                            .map_err(|e| e.to_string()))
                        .collect::<Vec<_>>()
                ),
                Outcome::Stream(r) => format!("{:?}", r.map(|i| i.config.name)),
                Outcome::Purge(r) => format!("{:?}", r.map(|p| p.dedup_entries)),
                other => format!("{other:?}"),
            });
        }
    }
    outcomes
}

fn content(store: &Store) -> Vec<StoredMessage> {
    store.read("orders", 1, 100, usize::MAX).unwrap()
}

#[tokio::test]
async fn replicas_applying_the_same_entries_hold_the_same_messages() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (open(dir.path(), "a.redb"), open(dir.path(), "b.redb"));
    let log = entries();
    let out_a = apply(&a, &log, 2).await;
    let out_b = apply(&b, &log, log.len()).await;
    assert_eq!(out_a, out_b);
    assert_eq!(
        out_a,
        vec![
            "Ok(\"orders\")".to_string(),
            "[Ok((1, false)), Ok((2, false)), Ok((3, false))]".into(),
            "[Ok((1, true))]".into(),
            "Ok(2)".into(),
            "[Ok((4, false))]".into(),
        ]
    );
    let (ca, cb) = (content(&a), content(&b));
    assert_eq!(ca, cb);
    assert_eq!(ca.len(), 4);
    // Stamps come from the entries' clock, not from either node's wall clock.
    assert_eq!(ca[0].time_ms(), 86_400_001);
    assert_eq!(ca[3].time_ms(), 86_400_000 + 120_001);
    assert_eq!(
        ca.iter().map(|m| m.key_seq).collect::<Vec<_>>(),
        vec![1, 2, 1, 3]
    );
    assert!(ca.iter().all(|m| m.origin == "eu"));
    // The id assigned when the message was prepared travels with the entry.
    assert_eq!(ca[1].id.len(), 32);
}

#[tokio::test]
async fn the_applied_marker_commits_with_the_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.redb");
    {
        let s = open(dir.path(), "m.redb");
        let log = entries();
        let decoded = log.iter().map(|b| LogEntry::decode(b).unwrap()).collect();
        s.apply_log(decoded, vec![("region/applied".into(), Some(vec![7]))])
            .await
            .unwrap();
        s.close();
    }
    let s = Store::open(StoreOptions::new(path)).unwrap();
    assert_eq!(s.get_state("region/applied").unwrap(), Some(vec![7]));
    assert_eq!(content(&s).len(), 4);
}

#[test]
fn a_damaged_entry_is_refused() {
    let log = entries();
    let mut bad = log[1].to_vec();
    bad[0] = 9;
    assert!(LogEntry::decode(&bad).is_err());
    let cut = &log[1][..log[1].len() - 3];
    assert!(LogEntry::decode(cut).is_err());
}

/// Many messages in one millisecond get consecutive clock values; a replica that restarts
/// between two entries of the same millisecond continues exactly where the others do.
#[tokio::test]
async fn a_restart_between_entries_does_not_change_the_stamps() {
    let dir = tempfile::tempdir().unwrap();
    let ms = 90_000_000;
    let config = StreamConfig {
        name: "orders".into(),
        subjects: vec!["orders.>".into()],
        ..StreamConfig::default()
    };
    let batch = |n: usize| -> Bytes {
        LogEntry {
            time_ms: ms,
            changes: vec![Change::Append((0..n).map(|_| msg(None, "k")).collect())],
        }
        .encode()
    };
    let create = LogEntry {
        time_ms: ms,
        changes: vec![Change::CreateStream(config)],
    }
    .encode();
    let log = [create, batch(50), batch(50)];
    let decode = |b: &[Bytes]| b.iter().map(|e| LogEntry::decode(e).unwrap()).collect();

    let steady = open(dir.path(), "steady.redb");
    steady.apply_log(decode(&log), Vec::new()).await.unwrap();

    let restarted = open(dir.path(), "restarted.redb");
    restarted
        .apply_log(decode(&log[..2]), Vec::new())
        .await
        .unwrap();
    restarted.close();
    let restarted = open(dir.path(), "restarted.redb");
    restarted
        .apply_log(decode(&log[2..]), Vec::new())
        .await
        .unwrap();

    let (a, b) = (content(&steady), content(&restarted));
    assert_eq!(a.len(), 100);
    assert_eq!(
        a.iter().map(|m| m.hlc).collect::<Vec<_>>(),
        b.iter().map(|m| m.hlc).collect::<Vec<_>>()
    );
    assert_eq!(a[99].hlc, (ms << 16) + 99);
}

/// A stream deleted and created again with other subjects inside one entry (one write
/// transaction): a message to the old subject finds no stream, one to the new subject
/// finds it, whatever the messages before them were routed to.
#[tokio::test]
async fn a_stream_recreated_within_one_transaction_routes_by_its_new_subjects() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "a.redb");
    let config = |subject: &str| StreamConfig {
        name: "orders".into(),
        subjects: vec![subject.into()],
        ..StreamConfig::default()
    };
    let at = |subject: &str| {
        Prepared::new(
            PubMessage {
                subject: subject.into(),
                ..PubMessage::default()
            },
            "eu",
        )
    };
    let entry = LogEntry {
        time_ms: 86_400_000,
        changes: vec![
            Change::CreateStream(config("orders.>")),
            Change::Append(vec![at("orders.eu"), at("orders.eu")]),
            Change::DeleteStream("orders".into()),
            Change::CreateStream(config("billing.>")),
            Change::Append(vec![at("orders.eu"), at("billing.eu")]),
        ],
    };
    let out = store.apply_log(vec![entry], Vec::new()).await.unwrap();
    let Some(Outcome::Append(last)) = out[0].last() else {
        panic!("no append outcome: {out:?}");
    };
    assert!(
        matches!(&last[0], Err(tern_store::StoreError::NoStream(s)) if s == "orders.eu"),
        "{:?}",
        last[0]
    );
    let stored = last[1].as_ref().expect("billing.eu is stored");
    assert_eq!((stored.stream.as_str(), stored.seq), ("orders", 1));
}

/// A log of one node that commits at once: every proposal is encoded as the region's log
/// would carry it, decoded, and applied to the store.
/// It holds the store it feeds, so that store is never closed: the test's end stops it.
struct Loopback(std::sync::OnceLock<Store>);

impl ReplicatedLog for Loopback {
    fn propose(
        &self,
        changes: Vec<Change>,
        _stored: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> LogFuture {
        let store = self.0.get().cloned();
        Box::pin(async move {
            let store = store.ok_or(tern_store::StoreError::Closed)?;
            let bytes = LogEntry {
                time_ms: tern_store::now_ms(),
                changes,
            }
            .encode();
            let entry = LogEntry::decode(&bytes)?;
            Ok(store.apply_log(vec![entry], Vec::new()).await?.remove(0))
        })
    }
}

/// A store on its own, and one whose changes go through a loopback log to itself.
fn lone_and_logged(dir: &std::path::Path) -> (Store, Store) {
    let lone = open(dir, "lone.redb");
    let logged = open(dir, "logged.redb");
    let log = Arc::new(Loopback(std::sync::OnceLock::new()));
    let _ = log.0.set(logged.clone());
    logged.attach_log(log);
    (lone, logged)
}

fn remote(origin_seq: u64, id: &str, key_seq: u64) -> StoredMessage {
    StoredMessage {
        seq: 0,
        subject: "orders.us".into(),
        id: id.into(),
        key: Some("k1".into()),
        headers: vec![("h".into(), "v".into())],
        payload: Bytes::from(format!("us {origin_seq}")),
        origin: "us".into(),
        origin_seq,
        key_seq,
        hlc: (86_400_000 + origin_seq) << 16,
    }
}

/// The same calls to a lone store and to one whose changes go through a log give the same
/// merge reports, vector, state and messages (but for the clocks of local messages, which
/// come from each one's commit).
#[tokio::test]
async fn a_merge_through_the_log_matches_a_direct_one() {
    let dir = tempfile::tempdir().unwrap();
    let (lone, logged) = lone_and_logged(dir.path());

    let mut outcomes = Vec::new();
    for s in [&lone, &logged] {
        s.create_stream(StreamConfig {
            name: "orders".into(),
            subjects: vec!["orders.>".into()],
            ..StreamConfig::default()
        })
        .await
        .unwrap();
        let appended = s
            .append(vec![
                PubMessage {
                    subject: "orders.eu".into(),
                    id: Some("a".into()),
                    key: Some("k1".into()),
                    ..PubMessage::default()
                },
                PubMessage {
                    subject: "orders.eu".into(),
                    id: Some("dup".into()),
                    ..PubMessage::default()
                },
            ])
            .await;
        assert!(appended.iter().all(Result::is_ok));
        let state = vec![("mesh/us".to_string(), Some(vec![5]))];
        let first = s
            .merge(
                "orders",
                vec![remote(1, "u1", 4), remote(3, "dup", 5), remote(5, "u5", 6)],
                Vec::new(),
                state,
            )
            .await
            .unwrap();
        let again = s
            .merge(
                "orders",
                vec![remote(5, "u5", 6), remote(6, "u6", 2)],
                Vec::new(),
                Vec::new(),
            )
            .await
            .unwrap();
        let refused = s
            .merge(
                "orders",
                vec![StoredMessage {
                    subject: "billing.us".into(),
                    ..remote(7, "u7", 1)
                }],
                Vec::new(),
                Vec::new(),
            )
            .await
            .map_err(|e| e.to_string());
        let after = s
            .append(vec![PubMessage {
                subject: "orders.eu".into(),
                id: Some("b".into()),
                key: Some("k1".into()),
                ..PubMessage::default()
            }])
            .await;
        assert!(after[0].is_ok());
        outcomes.push((first, again, refused));
    }
    assert_eq!(outcomes[0], outcomes[1]);
    let (first, again, refused) = &outcomes[0];
    assert_eq!(
        (*first, *again),
        (
            MergeReport {
                stored: 2,
                covered: 0,
                duplicates: 1,
                conflicts: 0,
            },
            MergeReport {
                stored: 1,
                covered: 1,
                duplicates: 0,
                conflicts: 0,
            }
        )
    );
    assert!(refused.is_err());
    let vector = |s: &Store| s.vector("orders").unwrap();
    assert_eq!(vector(&lone), vector(&logged));
    assert_eq!(
        vector(&lone),
        vec![("eu".to_string(), 3), ("us".to_string(), 6)]
    );
    assert_eq!(logged.get_state("mesh/us").unwrap(), Some(vec![5]));
    assert_eq!(lone.get_state("mesh/us").unwrap(), Some(vec![5]));
    // Local clocks differ (wall clock against the entry's); every other field agrees.
    let unclocked = |s: &Store| {
        content(s)
            .into_iter()
            .map(|mut m| {
                if m.origin == "eu" {
                    m.hlc = 0;
                }
                m
            })
            .collect::<Vec<_>>()
    };
    let (a, b) = (unclocked(&lone), unclocked(&logged));
    assert_eq!(a, b);
    let stamps: Vec<_> = a
        .iter()
        .map(|m| (m.seq, m.origin.as_str(), m.origin_seq, m.key_seq))
        .collect();
    assert_eq!(
        stamps,
        vec![
            (1, "eu", 1, 1),
            (2, "eu", 2, 0),
            (3, "us", 1, 4),
            (4, "us", 5, 6),
            (5, "us", 6, 2),
            (6, "eu", 3, 7),
        ]
    );
}

/// Conflicts found through the log are those a lone store finds: the same reports, the
/// same winners in the versions index, the same conflict records (but for the clocks of
/// each store's own messages, which come from each one's commit).
#[tokio::test]
async fn conflicts_through_the_log_match_direct_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (lone, logged) = lone_and_logged(dir.path());

    // Clocks that win and lose against any local one, whichever store stamps it.
    let late = (tern_store::now_ms() + 3_600_000) << 16;
    let early = 1 << 16;
    let version = |origin: &str, origin_seq: u64, key: &str, hlc: u64| StoredMessage {
        subject: format!("orders.{origin}"),
        id: format!("{origin}-{origin_seq}"),
        key: Some(key.into()),
        origin: origin.into(),
        origin_seq,
        key_seq: 1,
        hlc,
        ..StoredMessage::default()
    };
    let mut seen = Vec::new();
    for s in [&lone, &logged] {
        s.create_stream(StreamConfig {
            name: "orders".into(),
            subjects: vec!["orders.>".into()],
            ..StreamConfig::default()
        })
        .await
        .unwrap();
        for key in ["k1", "k2"] {
            let r = s
                .append(vec![PubMessage {
                    subject: "orders.eu".into(),
                    id: Some(format!("eu-{key}")),
                    key: Some(key.into()),
                    ..PubMessage::default()
                }])
                .await;
            assert!(r[0].is_ok());
        }
        let msgs = vec![
            // Wins against eu's k1 by the default order ...
            version("us", 1, "k1", late),
            // ... loses against eu's k2 ...
            version("us", 2, "k2", early),
            // ... and loses to ap's k1 by the caller's decision.
            version("ap", 1, "k1", early),
        ];
        let winners = vec![Decided {
            key: "k1".into(),
            key_seq: 1,
            origin: "ap".into(),
        }];
        let first = s.merge("orders", msgs, winners, Vec::new()).await.unwrap();
        let again = s
            .merge(
                "orders",
                vec![version("us", 1, "k1", late)],
                Vec::new(),
                Vec::new(),
            )
            .await
            .unwrap();
        let winner = |key| s.version("orders", key, 1).unwrap().unwrap().id;
        let records: Vec<_> = s
            .read("orders-conflicts", 1, 100, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|m| (m.seq, m.id, m.key, m.origin, m.origin_seq, m.headers))
            .collect();
        seen.push((first, again, winner("k1"), winner("k2"), records));
    }
    assert_eq!(seen[0], seen[1]);
    let (first, again, k1, k2, records) = &seen[0];
    assert_eq!(
        (*first, *again),
        (
            MergeReport {
                stored: 3,
                covered: 0,
                duplicates: 0,
                conflicts: 3,
            },
            MergeReport {
                stored: 0,
                covered: 1,
                duplicates: 0,
                conflicts: 0,
            }
        )
    );
    assert_eq!((k1.as_str(), k2.as_str()), ("ap-1", "eu-k2"));
    let ids: Vec<_> = records.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(
        ids,
        vec![
            "conflict:orders:k1:1:eu:1",
            "conflict:orders:k2:1:us:2",
            "conflict:orders:k1:1:us:1",
        ]
    );
    let decided_by: Vec<_> = records
        .iter()
        .map(|r| {
            r.5.iter()
                .find(|(k, _)| k == "tern-conflict-decided-by")
                .map(|(_, v)| v.as_str())
                .unwrap()
        })
        .collect();
    assert_eq!(
        decided_by,
        vec!["default-order", "default-order", "resolver"]
    );
}
