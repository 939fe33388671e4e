//! Merging messages another region accepted: each is stored at the next local sequence
//! with the stamp its origin gave it, while this store's own origin sequence stays
//! gap-free; covered, own-origin and duplicate messages are skipped (a duplicate still
//! moves the version vector); the key index and the clock move past merged stamps; the
//! vector and the own counter survive a reopen; and a merge with one bad message stores
//! nothing.
//!
//! Conflicts: a merged version of a key with the key_seq of a version from another origin
//! is a conflict; both stay stored, the winner is the one the caller's decision names or
//! else the greater (hlc, origin), the versions index keeps it, and a conflict record goes
//! to `<stream>-conflicts` in the same commit, the same (but for local sequences) in every
//! region and once only. The index ([`Store::version`]) holds the newest 64 versions of a
//! key and goes with its stream. Each test drives a real store file through the public
//! API and reads back.

use std::collections::BTreeMap;

use bytes::Bytes;
use tern_proto::{PubMessage, StreamConfig};
use tern_store::{Decided, MergeReport, Store, StoreError, StoreOptions, StoredMessage};

fn open(dir: &std::path::Path) -> Store {
    let mut opts = StoreOptions::new(dir.join("m.redb"));
    opts.origin = "eu".into();
    Store::open(opts).unwrap()
}

async fn orders(store: &Store) {
    orders_keeping(store, 0).await;
}

/// Stream "orders" on `orders.>`, keeping at most `max_msgs` messages (0: no limit).
async fn orders_keeping(store: &Store, max_msgs: u64) {
    store
        .create_stream(StreamConfig {
            name: "orders".into(),
            subjects: vec!["orders.>".into()],
            max_msgs,
            ..StreamConfig::default()
        })
        .await
        .unwrap();
}

fn local(id: &str, key: Option<&str>) -> PubMessage {
    PubMessage {
        subject: "orders.eu".into(),
        id: Some(id.into()),
        key: key.map(Into::into),
        headers: vec![],
        payload: Bytes::from(format!("local {id}")),
    }
}

/// A message as region `origin` stamped it.
fn remote(origin: &str, origin_seq: u64) -> StoredMessage {
    StoredMessage {
        // Ignored by a merge.
        seq: 999,
        subject: format!("orders.{origin}"),
        id: format!("{origin}-{origin_seq}"),
        key: None,
        headers: vec![("via".into(), origin.into())],
        payload: Bytes::from(format!("from {origin} {origin_seq}")),
        origin: origin.into(),
        origin_seq,
        key_seq: 0,
        hlc: (1_000_000 + origin_seq) << 16,
    }
}

async fn append(store: &Store, msgs: Vec<PubMessage>) -> Vec<(u64, bool)> {
    store
        .append(msgs)
        .await
        .into_iter()
        .map(|r| r.map(|r| (r.seq, r.duplicate)).unwrap())
        .collect()
}

async fn merge(store: &Store, msgs: Vec<StoredMessage>) -> MergeReport {
    store
        .merge("orders", msgs, Vec::new(), Vec::new())
        .await
        .unwrap()
}

fn all(store: &Store) -> Vec<StoredMessage> {
    store.read("orders", 1, 1000, usize::MAX).unwrap()
}

fn vector(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs.iter().map(|&(o, s)| (o.to_owned(), s)).collect()
}

fn report(stored: u64, covered: u64, duplicates: u64) -> MergeReport {
    MergeReport {
        stored,
        covered,
        duplicates,
        conflicts: 0,
    }
}

#[tokio::test]
async fn own_origin_seq_stays_gap_free_while_local_seq_counts_every_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    orders(&store).await;
    let mut tip = store.watch("orders").unwrap();
    assert_eq!(
        append(&store, vec![local("a", None), local("b", None)]).await,
        vec![(1, false), (2, false)]
    );
    let r = merge(&store, vec![remote("us", 1), remote("us", 2)]).await;
    assert_eq!(r, report(2, 0, 0));
    // Watchers hear of merged messages as of appended ones.
    assert!(tip.has_changed().unwrap());
    assert_eq!(*tip.borrow_and_update(), 4);
    assert_eq!(
        append(&store, vec![local("c", None)]).await,
        vec![(5, false)]
    );
    // "ap" skips ahead: the sender passed over 1..=4; the vector records 5.
    let r = merge(&store, vec![remote("us", 3), remote("ap", 5)]).await;
    assert_eq!(r, report(2, 0, 0));
    assert_eq!(
        append(&store, vec![local("d", None)]).await,
        vec![(8, false)]
    );

    let got: Vec<_> = all(&store)
        .iter()
        .map(|m| (m.seq, m.origin.clone(), m.origin_seq))
        .collect();
    let want: Vec<_> = [
        (1, "eu", 1),
        (2, "eu", 2),
        (3, "us", 1),
        (4, "us", 2),
        (5, "eu", 3),
        (6, "us", 3),
        (7, "ap", 5),
        (8, "eu", 4),
    ]
    .iter()
    .map(|&(s, o, os)| (s, o.to_owned(), os))
    .collect();
    assert_eq!(got, want);
    let st = store.stream_info("orders").unwrap().state;
    assert_eq!((st.first_seq, st.last_seq, st.msgs), (1, 8, 8));
    assert_eq!(
        store.vector("orders").unwrap(),
        vector(&[("ap", 5), ("eu", 4), ("us", 3)])
    );
}

#[tokio::test]
async fn covered_and_own_origin_messages_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    orders(&store).await;
    merge(&store, (1..=3).map(|s| remote("us", s)).collect()).await;
    let mut own = remote("eu", 10);
    own.subject = "orders.eu".into();
    let r = merge(
        &store,
        vec![remote("us", 2), own, remote("us", 4), remote("us", 3)],
    )
    .await;
    assert_eq!(r, report(1, 3, 0));
    assert_eq!(
        all(&store).iter().map(|m| m.origin_seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(
        store.vector("orders").unwrap(),
        vector(&[("eu", 0), ("us", 4)])
    );
}

#[tokio::test]
async fn a_duplicate_id_is_skipped_and_the_vector_still_advances() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    orders(&store).await;
    append(&store, vec![local("x", None)]).await;
    let mut dup = remote("us", 5);
    dup.id = "x".into();
    let r = merge(&store, vec![dup.clone(), remote("us", 6)]).await;
    assert_eq!(r, report(1, 0, 1));
    assert_eq!(
        store.vector("orders").unwrap(),
        vector(&[("eu", 1), ("us", 6)])
    );
    assert_eq!(store.stream_info("orders").unwrap().state.msgs, 2);
    // Sent again, it is covered now.
    assert_eq!(merge(&store, vec![dup]).await, report(0, 1, 0));
    // A merged id is in the index: a producer retrying here hears it is a duplicate.
    assert_eq!(
        append(&store, vec![local("us-6", None)]).await,
        vec![(2, true)]
    );
}

#[tokio::test]
async fn the_next_local_key_seq_follows_a_merged_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    orders(&store).await;
    append(&store, vec![local("a", Some("k"))]).await;
    let mut m = remote("us", 1);
    m.key = Some("k".into());
    m.key_seq = 7;
    // A lower version merged later does not move the key back.
    let mut older = remote("us", 2);
    older.key = Some("k".into());
    older.key_seq = 3;
    assert_eq!(merge(&store, vec![m, older]).await, report(2, 0, 0));
    append(&store, vec![local("b", Some("k")), local("c", Some("j"))]).await;
    let keys: Vec<_> = all(&store)
        .iter()
        .map(|m| (m.key.clone().unwrap(), m.key_seq))
        .collect();
    let want: Vec<_> = [("k", 1), ("k", 7), ("k", 3), ("k", 8), ("j", 1)]
        .iter()
        .map(|&(k, s)| (k.to_owned(), s))
        .collect();
    assert_eq!(keys, want);
}

#[tokio::test]
async fn merged_stamps_read_back_exactly_and_later_local_stamps_order_after_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    orders(&store).await;
    append(&store, vec![local("a", None)]).await;
    // Stamped by a clock an hour ahead of this node's.
    let ahead = tern_store::now_ms() + 3_600_000;
    let mut m = remote("us", 41);
    m.key = Some("k".into());
    m.key_seq = 2;
    m.hlc = (ahead << 16) | 7;
    merge(&store, vec![m.clone()]).await;
    let want = StoredMessage {
        seq: 2,
        ..m.clone()
    };
    assert_eq!(store.get("orders", 2).unwrap(), Some(want.clone()));
    assert_eq!(store.read("orders", 2, 1, usize::MAX).unwrap(), vec![want]);
    let records = store.read_records("orders", 2, 1, usize::MAX).unwrap();
    assert_eq!(
        records[0].view().unwrap().to_message(),
        StoredMessage {
            seq: 2,
            ..m.clone()
        }
    );
    append(&store, vec![local("b", None)]).await;
    let after = store.get("orders", 3).unwrap().unwrap();
    assert!(after.hlc > m.hlc, "{} <= {}", after.hlc, m.hlc);
    assert_eq!(after.origin_seq, 2);
}

#[tokio::test]
async fn the_vector_and_the_own_counter_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    orders(&store).await;
    append(&store, vec![local("a", None), local("b", None)]).await;
    merge(&store, vec![remote("us", 3), remote("ap", 1)]).await;
    let before = store.vector("orders").unwrap();
    assert_eq!(before, vector(&[("ap", 1), ("eu", 2), ("us", 3)]));
    store.close();

    let store = open(dir.path());
    assert_eq!(store.vector("orders").unwrap(), before);
    assert_eq!(merge(&store, vec![remote("us", 3)]).await, report(0, 1, 0));
    append(&store, vec![local("c", None)]).await;
    let last = store.get("orders", 5).unwrap().unwrap();
    assert_eq!((last.origin.as_str(), last.origin_seq), ("eu", 3));
}

#[tokio::test]
async fn merged_messages_are_under_the_streams_retention() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    orders_keeping(&store, 2).await;
    merge(&store, (1..=3).map(|s| remote("us", s)).collect()).await;
    let st = store.stream_info("orders").unwrap().state;
    assert_eq!((st.first_seq, st.last_seq, st.msgs), (2, 3, 2));
    // What retention removed stays passed over.
    assert_eq!(merge(&store, vec![remote("us", 1)]).await, report(0, 1, 0));
}

#[tokio::test]
async fn a_merge_writes_its_state_with_the_messages() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    orders(&store).await;
    store
        .put_state(vec![("mesh/old".into(), Some(vec![1]))])
        .await
        .unwrap();
    let state = vec![("mesh/us".into(), Some(vec![3])), ("mesh/old".into(), None)];
    let r = store
        .merge("orders", vec![remote("us", 3)], Vec::new(), state)
        .await
        .unwrap();
    assert_eq!(r, report(1, 0, 0));
    assert_eq!(store.get_state("mesh/us").unwrap(), Some(vec![3]));
    assert_eq!(store.get_state("mesh/old").unwrap(), None);
}

#[tokio::test]
async fn a_bad_merge_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    orders(&store).await;
    store
        .create_stream(StreamConfig {
            name: "billing".into(),
            subjects: vec!["billing.>".into()],
            ..StreamConfig::default()
        })
        .await
        .unwrap();
    merge(&store, vec![remote("us", 1)]).await;
    let before = (all(&store), store.vector("orders").unwrap());
    let state = || vec![("mesh/us".to_string(), Some(vec![9]))];

    assert!(matches!(
        store
            .merge("nowhere", vec![remote("us", 2)], Vec::new(), state())
            .await,
        Err(StoreError::StreamNotFound(s)) if s == "nowhere"
    ));
    let mut other_stream = remote("us", 3);
    other_stream.subject = "billing.us".into();
    let mut bad_subject = remote("us", 3);
    bad_subject.subject = "orders..us".into();
    let mut no_origin = remote("us", 3);
    no_origin.origin = String::new();
    let mut bad_origin = remote("us", 3);
    bad_origin.origin = "us.east".into();
    let mut too_long = remote("us", 3);
    too_long.key = Some("k".repeat(70_000));
    for (what, bad, cause) in [
        ("a subject of another stream", other_stream, false),
        ("an invalid subject", bad_subject, true),
        ("no origin", no_origin, true),
        ("an origin that is not a name", bad_origin, true),
        ("a key too long to store", too_long, false),
    ] {
        let msgs = vec![remote("us", 2), bad, remote("ap", 1)];
        match store.merge("orders", msgs, Vec::new(), state()).await {
            Err(StoreError::BadMerge {
                stream,
                index,
                cause: c,
                ..
            }) => {
                assert_eq!((stream.as_str(), index), ("orders", 1), "{what}");
                assert_eq!(c.is_some(), cause, "{what}");
            }
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(
            (all(&store), store.vector("orders").unwrap()),
            before,
            "{what}"
        );
        assert_eq!(store.get_state("mesh/us").unwrap(), None, "{what}");
    }
    assert!(store.read("billing", 1, 10, usize::MAX).unwrap().is_empty());
    // The store still merges.
    assert_eq!(merge(&store, vec![remote("us", 2)]).await, report(1, 0, 0));
}

#[tokio::test]
async fn deleting_a_stream_deletes_its_vector() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    orders(&store).await;
    merge(&store, vec![remote("us", 7)]).await;
    append(&store, vec![local("a", None)]).await;
    store.delete_stream("orders").await.unwrap();
    assert!(matches!(
        store.vector("orders"),
        Err(StoreError::StreamNotFound(_))
    ));
    orders(&store).await;
    assert_eq!(store.vector("orders").unwrap(), vector(&[("eu", 0)]));
    assert_eq!(merge(&store, vec![remote("us", 7)]).await, report(1, 0, 0));
}

// Conflicts and the versions index.

fn open_as(dir: &std::path::Path, origin: &str) -> Store {
    let mut opts = StoreOptions::new(dir.join(format!("{origin}.redb")));
    opts.origin = origin.into();
    Store::open(opts).unwrap()
}

/// Version `key_seq` of `key` as region `origin` stamped it.
fn version(origin: &str, origin_seq: u64, key: &str, key_seq: u64, hlc: u64) -> StoredMessage {
    StoredMessage {
        key: Some(key.into()),
        key_seq,
        hlc,
        ..remote(origin, origin_seq)
    }
}

fn conflicted(stored: u64, conflicts: u64) -> MergeReport {
    MergeReport {
        conflicts,
        ..report(stored, 0, 0)
    }
}

fn decided(key: &str, key_seq: u64, origin: &str) -> Decided {
    Decided {
        key: key.into(),
        key_seq,
        origin: origin.into(),
    }
}

/// The conflict records `store` holds for stream "orders".
fn records(store: &Store) -> Vec<StoredMessage> {
    match store.read("orders-conflicts", 1, 1000, usize::MAX) {
        Ok(m) => m,
        Err(StoreError::StreamNotFound(_)) => Vec::new(),
        Err(e) => panic!("{e}"),
    }
}

fn headers(m: &StoredMessage) -> BTreeMap<String, String> {
    m.headers.iter().cloned().collect()
}

/// What every region records alike: the id, key and headers but the local sequences.
fn shared(m: &StoredMessage) -> (String, Option<String>, BTreeMap<String, String>) {
    let mut h = headers(m);
    h.remove("tern-conflict-winner-seq");
    h.remove("tern-conflict-loser-seq");
    (m.id.clone(), m.key.clone(), h)
}

/// The message `store` holds with this id in "orders".
fn by_id(store: &Store, id: &str) -> StoredMessage {
    all(store).into_iter().find(|m| m.id == id).unwrap()
}

/// Two regions each write version 1 of a key and then merge each other's: each region has
/// one conflict between its own version and the merged one, decided by the default order
/// (the later hlc), so the own version wins in one region and loses in the other, and both
/// record it alike. Then again with the other region writing later.
#[tokio::test]
async fn a_conflict_with_an_own_version_is_decided_alike_in_both_regions() {
    let dir = tempfile::tempdir().unwrap();
    let (eu, us) = (open_as(dir.path(), "eu"), open_as(dir.path(), "us"));
    orders(&eu).await;
    orders(&us).await;
    let own = |store: &Store, id: &str, key: &str| {
        let store = store.clone();
        let m = PubMessage {
            subject: format!("orders.{id}"),
            ..local(id, Some(key))
        };
        async move {
            let r = store.append(vec![m]).await.remove(0).unwrap();
            store.get("orders", r.seq).unwrap().unwrap()
        }
    };
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(5));
    // Key "k": eu writes first, us later (us wins). Key "j": the other way round.
    let ek = own(&eu, "e-k", "k").await;
    pause().await;
    let uk = own(&us, "u-k", "k").await;
    pause().await;
    let uj = own(&us, "u-j", "j").await;
    pause().await;
    let ej = own(&eu, "e-j", "j").await;
    assert!(uk.hlc > ek.hlc && ej.hlc > uj.hlc);
    assert_eq!(
        (ek.key_seq, uk.key_seq, ej.key_seq, uj.key_seq),
        (1, 1, 1, 1)
    );

    let at_eu = eu
        .merge(
            "orders",
            vec![uk.clone(), uj.clone()],
            Vec::new(),
            Vec::new(),
        )
        .await
        .unwrap();
    let at_us = us
        .merge(
            "orders",
            vec![ek.clone(), ej.clone()],
            Vec::new(),
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!((at_eu, at_us), (conflicted(2, 2), conflicted(2, 2)));

    let (re, ru) = (records(&eu), records(&us));
    assert_eq!((re.len(), ru.len()), (2, 2));
    assert_eq!(
        re.iter().map(shared).collect::<Vec<_>>(),
        ru.iter().map(shared).collect::<Vec<_>>()
    );
    let want = |key: &str, winner: &str, loser: &str| {
        let h: BTreeMap<String, String> = [
            ("tern-conflict-stream", "orders"),
            ("tern-conflict-key-seq", "1"),
            ("tern-conflict-winner", winner),
            ("tern-conflict-loser", loser),
            ("tern-conflict-decided-by", "default-order"),
        ]
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        // The loser's `<origin>/<origin_seq>` is `<origin>:<origin_seq>` in the id.
        let id = format!("conflict:orders:{key}:1:{}", loser.replace('/', ":"));
        (id, Some(key.to_owned()), h)
    };
    assert_eq!(shared(&re[0]), want("k", "us/1", "eu/1"));
    assert_eq!(shared(&re[1]), want("j", "eu/2", "us/2"));
    // The local sequences are each region's own: at eu, its own versions are 1 and 2 and
    // the merged ones 3 and 4; at us the other way round.
    let seqs = |m: &StoredMessage| {
        let h = headers(m);
        (
            h["tern-conflict-winner-seq"].clone(),
            h["tern-conflict-loser-seq"].clone(),
        )
    };
    let pair = |w: &str, l: &str| (w.to_owned(), l.to_owned());
    assert_eq!(seqs(&re[0]), pair("3", "1"));
    assert_eq!(seqs(&re[1]), pair("2", "4"));
    assert_eq!(seqs(&ru[0]), pair("1", "3"));
    assert_eq!(seqs(&ru[1]), pair("4", "2"));
    // A record is a message of the region's own origin to `$conflict.orders`, in a stream
    // bound to that subject alone, with an empty payload.
    for (store, origin) in [(&eu, "eu"), (&us, "us")] {
        let info = store.stream_info("orders-conflicts").unwrap();
        assert_eq!(info.config.subjects, vec!["$conflict.orders".to_string()]);
        assert_eq!(info.config.max_msgs, 0);
        for (i, r) in records(store).iter().enumerate() {
            assert_eq!(r.subject, "$conflict.orders");
            assert_eq!((r.origin.as_str(), r.origin_seq), (origin, i as u64 + 1));
            assert!(r.payload.is_empty());
        }
        // Both versions stay stored; the index holds the winners.
        assert_eq!(all(store).len(), 4);
        let k = store.version("orders", "k", 1).unwrap().unwrap();
        let j = store.version("orders", "j", 1).unwrap().unwrap();
        assert_eq!((k.id.as_str(), j.id.as_str()), ("u-k", "e-j"));
        assert_eq!(k, by_id(store, "u-k"));
    }
}

#[tokio::test]
async fn the_callers_decision_overrides_the_default_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    orders(&store).await;
    append(
        &store,
        vec![local("e-k", Some("k")), local("e-j", Some("j"))],
    )
    .await;
    append(&store, vec![local("e-i", Some("i"))]).await;
    // Later than anything of this store: by the default order, each of these wins.
    let late = (tern_store::now_ms() + 60_000) << 16;
    let msgs = vec![
        version("us", 1, "k", 1, late),
        version("us", 2, "j", 1, late),
        version("us", 3, "i", 1, late),
    ];
    let winners = vec![
        // Decides k for eu.
        decided("k", 1, "eu"),
        // Names an origin that is neither's: the default order decides j.
        decided("j", 1, "ap"),
        // Another version of i: the default order decides i.
        decided("i", 2, "eu"),
    ];
    let r = store
        .merge("orders", msgs, winners, Vec::new())
        .await
        .unwrap();
    assert_eq!(r, conflicted(3, 3));
    let got: Vec<_> = records(&store)
        .iter()
        .map(|m| {
            let h = headers(m);
            (
                m.key.clone().unwrap(),
                h["tern-conflict-winner"].clone(),
                h["tern-conflict-decided-by"].clone(),
            )
        })
        .collect();
    let want: Vec<_> = [
        ("k", "eu/1", "resolver"),
        ("j", "us/2", "default-order"),
        ("i", "us/3", "default-order"),
    ]
    .iter()
    .map(|&(k, w, d)| (k.to_owned(), w.to_owned(), d.to_owned()))
    .collect();
    assert_eq!(got, want);
    let id = |key| store.version("orders", key, 1).unwrap().unwrap().id;
    assert_eq!(
        (id("k"), id("j"), id("i")),
        ("e-k".into(), "us-2".into(), "us-3".into())
    );
}

/// A third region's version of the same key_seq is compared with the winner of the first
/// conflict, whether it comes in a later merge or in the same one.
#[tokio::test]
async fn a_third_origins_version_is_compared_with_the_winner() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    orders(&store).await;
    let us = version("us", 1, "k", 1, 100 << 16);
    let ap = version("ap", 1, "k", 1, 300 << 16);
    // Later than us, earlier than ap: it would beat us, but loses to ap.
    let sa = version("sa", 1, "k", 1, 200 << 16);
    assert_eq!(merge(&store, vec![us.clone()]).await, conflicted(1, 0));
    assert_eq!(merge(&store, vec![ap.clone()]).await, conflicted(1, 1));
    assert_eq!(merge(&store, vec![sa.clone()]).await, conflicted(1, 1));
    let pairs = |store: &Store| {
        records(store)
            .iter()
            .map(|m| {
                let h = headers(m);
                (
                    h["tern-conflict-winner"].clone(),
                    h["tern-conflict-loser"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    let want = vec![
        ("ap/1".to_string(), "us/1".to_string()),
        ("ap/1".into(), "sa/1".into()),
    ];
    assert_eq!(pairs(&store), want);
    assert_eq!(store.version("orders", "k", 1).unwrap().unwrap().id, "ap-1");

    // All three in one merge: the same.
    let dir = tempfile::tempdir().unwrap();
    let one = open(dir.path());
    orders(&one).await;
    assert_eq!(merge(&one, vec![us, ap, sa]).await, conflicted(3, 2));
    assert_eq!(pairs(&one), want);
    assert_eq!(one.version("orders", "k", 1).unwrap().unwrap().id, "ap-1");
}

#[tokio::test]
async fn other_versions_other_keys_and_unkeyed_messages_do_not_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    orders(&store).await;
    append(&store, vec![local("e-k", Some("k")), local("e-u", None)]).await;
    let msgs = vec![
        // Version 2 of k, version 1 of another key, no key.
        version("us", 1, "k", 2, 1 << 16),
        version("us", 2, "j", 1, 1 << 16),
        remote("us", 3),
        // Version 1 of j again, from the same origin: no conflict either.
        version("us", 4, "j", 1, 2 << 16),
    ];
    assert_eq!(merge(&store, msgs).await, conflicted(4, 0));
    assert!(matches!(
        store.stream_info("orders-conflicts"),
        Err(StoreError::StreamNotFound(_))
    ));
    let id = |key, key_seq| store.version("orders", key, key_seq).unwrap().map(|m| m.id);
    assert_eq!(id("k", 1), Some("e-k".into()));
    assert_eq!(id("k", 2), Some("us-1".into()));
    // The first stored of an origin's two messages with one version keeps it.
    assert_eq!(id("j", 1), Some("us-2".into()));
    assert_eq!(id("k", 3), None);
    assert_eq!(id("x", 1), None);
}

/// A conflict merged again is covered, so not found again; and should it be found again
/// (here: the stream deleted and made again, the conflicts stream kept), its record is a
/// duplicate of the first one.
#[tokio::test]
async fn the_same_conflict_is_recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let m = version("us", 1, "k", 1, 1 << 16);
    // The same winner each time (the clock has moved on between them).
    let decide = |m: &StoredMessage| {
        let (store, m) = (store.clone(), m.clone());
        async move {
            let winners = vec![decided("k", 1, "us")];
            store
                .merge("orders", vec![m], winners, Vec::new())
                .await
                .unwrap()
        }
    };
    for round in 0..2 {
        orders(&store).await;
        append(&store, vec![local("e-k", Some("k"))]).await;
        assert_eq!(decide(&m).await, conflicted(1, 1), "{round}");
        assert_eq!(decide(&m).await, report(0, 1, 0), "{round}");
        let held = records(&store);
        assert_eq!(held.len(), 1, "{round}: {held:#?}");
        assert_eq!(held[0].id, "conflict:orders:k:1:eu:1");
        store.delete_stream("orders").await.unwrap();
    }
}

#[tokio::test]
async fn version_reads_the_stored_message_until_it_is_purged() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    orders_keeping(&store, 3).await;
    append(
        &store,
        vec![
            local("a", Some("k")),
            local("b", Some("j")),
            local("c", Some("k")),
        ],
    )
    .await;
    merge(&store, vec![version("us", 1, "k", 3, 1 << 16)]).await;
    let got = |key, key_seq| store.version("orders", key, key_seq).unwrap();
    assert_eq!(got("k", 2), store.get("orders", 3).unwrap());
    assert_eq!(got("k", 3).unwrap().origin, "us");
    assert_eq!(got("j", 1).unwrap().id, "b");
    // Retention removed the first message: its version is still indexed, but gone.
    assert_eq!(got("k", 1), None);
    assert!(matches!(
        store.version("nowhere", "k", 1),
        Err(StoreError::StreamNotFound(_))
    ));
    // The index survives a reopen.
    store.close();
    let store = open(dir.path());
    assert_eq!(store.version("orders", "k", 3).unwrap().unwrap().id, "us-1");
    // And goes with its stream.
    store.delete_stream("orders").await.unwrap();
    orders(&store).await;
    assert_eq!(store.version("orders", "k", 3).unwrap(), None);
    assert_eq!(store.version("orders", "j", 1).unwrap(), None);
}

/// The index keeps the newest 64 versions of a key: version n - 64 leaves when version n
/// comes, also when a merged version jumps ahead; a conflict with an older version goes
/// undetected, one within the window does not.
#[tokio::test]
async fn the_index_keeps_the_newest_64_versions_of_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    orders(&store).await;
    let own = |n: u64| local(&format!("e{n}"), Some("k"));
    append(&store, (1..=64).map(own).collect()).await;
    let has = |key_seq| store.version("orders", "k", key_seq).unwrap().is_some();
    assert!(has(1) && has(64));
    append(&store, vec![own(65)]).await;
    assert!(!has(1) && has(2) && has(65));
    // Version 1 is not compared any more; version 2 is.
    let early = 1 << 16;
    let r = merge(
        &store,
        vec![
            version("us", 1, "k", 1, early),
            version("us", 2, "k", 2, early),
        ],
    )
    .await;
    assert_eq!(r, conflicted(2, 1));
    assert_eq!(records(&store)[0].id, "conflict:orders:k:2:us:2");
    // A merged version far ahead moves the window up to it.
    merge(&store, vec![version("us", 3, "k", 200, early)]).await;
    assert!(!has(65) && !has(136) && has(200));
    append(&store, vec![own(201)]).await;
    assert!(has(201) && has(200));
    // Below the window again: stored, not indexed.
    merge(&store, vec![version("us", 4, "k", 100, early)]).await;
    assert!(!has(100));
    // Within it: indexed.
    merge(&store, vec![version("us", 5, "k", 150, early)]).await;
    assert!(has(150));
    assert_eq!(records(&store).len(), 1);
}

/// Conflict records go to whatever stream takes `$conflict.<stream>`; if none does and
/// `<stream>-conflicts` cannot be made, a merge that would record a conflict is refused
/// whole, and one that would not is stored.
#[tokio::test]
async fn the_records_go_to_the_stream_bound_to_the_conflict_subject() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    orders(&store).await;
    store
        .create_stream(StreamConfig {
            name: "audit".into(),
            subjects: vec!["$conflict.>".into()],
            ..StreamConfig::default()
        })
        .await
        .unwrap();
    append(&store, vec![local("e-k", Some("k"))]).await;
    let r = merge(&store, vec![version("us", 1, "k", 1, 1 << 16)]).await;
    assert_eq!(r, conflicted(1, 1));
    let held = store.read("audit", 1, 10, usize::MAX).unwrap();
    assert_eq!(held[0].id, "conflict:orders:k:1:us:1");
    assert!(store.stream_info("orders-conflicts").is_err());

    // A stream named like the conflict stream, bound elsewhere.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    orders(&store).await;
    store
        .create_stream(StreamConfig {
            name: "orders-conflicts".into(),
            subjects: vec!["elsewhere.>".into()],
            ..StreamConfig::default()
        })
        .await
        .unwrap();
    append(&store, vec![local("e-k", Some("k"))]).await;
    let before = (all(&store), store.vector("orders").unwrap());
    let state = vec![("mesh/us".to_string(), Some(vec![1]))];
    let msgs = vec![
        version("us", 1, "j", 1, 1 << 16),
        version("us", 2, "k", 1, 1 << 16),
    ];
    match store.merge("orders", msgs, Vec::new(), state).await {
        Err(StoreError::BadMerge { index, reason, .. }) => {
            assert_eq!(index, 1, "{reason}");
            assert!(reason.contains("orders-conflicts"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!((all(&store), store.vector("orders").unwrap()), before);
    assert_eq!(store.get_state("mesh/us").unwrap(), None);
    // Without a conflict, the merge is stored.
    let r = merge(&store, vec![version("us", 1, "j", 1, 1 << 16)]).await;
    assert_eq!(r, conflicted(1, 0));
    // Two versions from other origins in one merge are a conflict too.
    match store
        .merge(
            "orders",
            vec![version("us", 2, "i", 1, 1), version("ap", 1, "i", 1, 2)],
            Vec::new(),
            Vec::new(),
        )
        .await
    {
        Err(StoreError::BadMerge { index, .. }) => assert_eq!(index, 1),
        other => panic!("{other:?}"),
    }

    // A stream whose conflict stream's name would be too long.
    let long = "o".repeat(120);
    store
        .create_stream(StreamConfig {
            name: long.clone(),
            subjects: vec!["long.>".into()],
            ..StreamConfig::default()
        })
        .await
        .unwrap();
    let at_long = |m: StoredMessage| StoredMessage {
        subject: "long.us".into(),
        ..m
    };
    let r = store
        .merge(
            &long,
            vec![at_long(version("us", 1, "k", 1, 1))],
            Vec::new(),
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(r, conflicted(1, 0));
    let refused = store
        .merge(
            &long,
            vec![at_long(version("ap", 1, "k", 1, 1))],
            Vec::new(),
            Vec::new(),
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::BadMerge { index: 0, .. })),
        "{refused:?}"
    );
}

/// A store that indexes only some streams finds no conflict with its own versions in the
/// others: they are not in the index (the node indexes the streams it copies in).
#[tokio::test]
async fn own_versions_of_streams_not_indexed_find_no_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = StoreOptions::new(dir.path().join("eu.redb"));
    opts.origin = "eu".into();
    opts.versioned_streams = Some(["payments".to_string()].into());
    let eu = Store::open(opts).unwrap();
    orders(&eu).await;
    let m = PubMessage {
        subject: "orders.k".into(),
        ..local("e-k", Some("k"))
    };
    eu.append(vec![m]).await.remove(0).unwrap();
    assert_eq!(eu.version("orders", "k", 1).unwrap(), None);
    let copy = version("us", 1, "k", 1, u64::MAX >> 1);
    let got = eu
        .merge("orders", vec![copy], Vec::new(), Vec::new())
        .await
        .unwrap();
    assert_eq!(got, conflicted(1, 0));
    assert!(records(&eu).is_empty());
}
