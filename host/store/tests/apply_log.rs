//! Applying replicated log entries: every node that applies the same entries in the same
//! order ends with the same stream content, stamps included, whatever its wall clock says.

use bytes::Bytes;
use tern_proto::{PubMessage, StreamConfig};
use tern_store::{Change, LogEntry, Outcome, Prepared, Store, StoreOptions, StoredMessage};

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
