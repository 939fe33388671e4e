//! Merging messages another region accepted: each is stored at the next local sequence
//! with the stamp its origin gave it, while this store's own origin sequence stays
//! gap-free; covered, own-origin and duplicate messages are skipped (a duplicate still
//! moves the version vector); the key index and the clock move past merged stamps; the
//! vector and the own counter survive a reopen; and a merge with one bad message stores
//! nothing. Each test drives a real store file through the public API and reads back.

use bytes::Bytes;
use tern_proto::{PubMessage, StreamConfig};
use tern_store::{MergeReport, Store, StoreError, StoreOptions, StoredMessage};

fn open(dir: &std::path::Path) -> Store {
    let mut opts = StoreOptions::new(dir.join("m.redb"));
    opts.origin = "eu".into();
    Store::open(opts).unwrap()
}

async fn orders(store: &Store) {
    store
        .create_stream(StreamConfig {
            name: "orders".into(),
            subjects: vec!["orders.>".into()],
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
    store.merge("orders", msgs, Vec::new()).await.unwrap()
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
    store
        .create_stream(StreamConfig {
            name: "orders".into(),
            subjects: vec!["orders.>".into()],
            max_msgs: 2,
            ..StreamConfig::default()
        })
        .await
        .unwrap();
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
        .merge("orders", vec![remote("us", 3)], state)
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
        store.merge("nowhere", vec![remote("us", 2)], state()).await,
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
        match store.merge("orders", msgs, state()).await {
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
