//! The store against a real redb file: group-committed appends, dedup that survives a
//! reopen and expires with its window, retention by count, bytes and age, consumer group
//! state, and a full disk that fails writes without losing what was committed.

use std::sync::Arc;

use bytes::Bytes;
use tern_proto::{PubMessage, StartPosition, StreamConfig};
use tern_store::{FaultSwitch, GroupUpdate, PendingRow, Store, StoreError, StoreOptions};

fn msg(subject: &str, id: Option<&str>, payload: &[u8]) -> PubMessage {
    PubMessage {
        subject: subject.into(),
        id: id.map(Into::into),
        key: None,
        headers: vec![],
        payload: Bytes::copy_from_slice(payload),
    }
}

fn stream(name: &str, subject: &str) -> StreamConfig {
    StreamConfig {
        name: name.into(),
        subjects: vec![subject.into()],
        ..Default::default()
    }
}

fn open(dir: &std::path::Path) -> Store {
    Store::open(StoreOptions::new(dir.join("t.redb"))).unwrap()
}

#[tokio::test]
async fn append_read_and_dedup_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .create_stream(stream("orders", "orders.>"))
        .await
        .unwrap();
    let r = store
        .append(vec![
            msg("orders.eu", Some("a"), b"1"),
            msg("orders.us", Some("b"), b"2"),
            msg("orders.eu", Some("a"), b"again"),
            msg("nowhere", None, b"x"),
        ])
        .await;
    let r0 = r[0].as_ref().unwrap();
    assert_eq!((r0.seq, r0.duplicate), (1, false));
    assert_eq!(r[1].as_ref().unwrap().seq, 2);
    let dup = r[2].as_ref().unwrap();
    assert_eq!(
        (dup.seq, dup.duplicate),
        (1, true),
        "same id in one batch is a duplicate"
    );
    assert!(matches!(r[3], Err(StoreError::NoStream(_))));
    store.close();

    let store = open(dir.path());
    let info = store.stream_info("orders").unwrap();
    assert_eq!((info.state.msgs, info.state.last_seq), (2, 2));
    let again = store.append(vec![msg("orders.eu", Some("b"), b"3")]).await;
    let again = again[0].as_ref().unwrap();
    assert_eq!(
        (again.seq, again.duplicate),
        (2, true),
        "dedup index survives a reopen"
    );
    let twice = store
        .append(vec![msg("orders.eu", Some("a"), b"third try")])
        .await;
    assert_eq!(
        twice[0].as_ref().unwrap().seq,
        1,
        "a duplicate leaves the original's sequence in the index"
    );
    let msgs = store.read("orders", 1, 10, 1 << 20).unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].payload, Bytes::from_static(b"1"));
    assert_eq!(msgs[0].origin, "local");
    assert_eq!(msgs[0].origin_seq, 1);
    assert!(msgs[1].hlc > msgs[0].hlc, "hlc grows with sequence");
    let fresh = store.append(vec![msg("orders.eu", None, b"4")]).await;
    assert_eq!(
        fresh[0].as_ref().unwrap().seq,
        3,
        "sequences continue after a reopen"
    );
    assert!(
        !fresh[0].as_ref().unwrap().id.is_empty(),
        "an id is assigned"
    );
}

#[tokio::test]
async fn key_seq_counts_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create_stream(stream("s", "s.>")).await.unwrap();
    let mut m = vec![];
    for k in ["a", "b", "a", "a"] {
        let mut x = msg("s.x", None, b"");
        x.key = Some(k.into());
        m.push(x);
    }
    store.append(m).await;
    let seqs: Vec<u64> = store
        .read("s", 1, 10, 1 << 20)
        .unwrap()
        .iter()
        .map(|m| m.key_seq)
        .collect();
    assert_eq!(seqs, vec![1, 1, 2, 3]);
}

#[tokio::test]
async fn stream_config_rules() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create_stream(stream("a", "a.>")).await.unwrap();
    // Identical re-creation is idempotent; a different one is refused.
    store.create_stream(stream("a", "a.>")).await.unwrap();
    assert!(matches!(
        store.create_stream(stream("a", "a.b")).await,
        Err(StoreError::StreamExists(_))
    ));
    assert!(matches!(
        store.create_stream(stream("b", "a.*")).await,
        Err(StoreError::SubjectOverlap { .. })
    ));
    assert!(matches!(
        store.create_stream(stream("bad name", "c")).await,
        Err(StoreError::InvalidSubject(_))
    ));
    assert!(matches!(
        store.create_stream(stream("c", "c..d")).await,
        Err(StoreError::InvalidSubject(_))
    ));
    store.delete_stream("a").await.unwrap();
    assert!(matches!(
        store.stream_info("a"),
        Err(StoreError::StreamNotFound(_))
    ));
    assert!(matches!(
        store.delete_stream("a").await,
        Err(StoreError::StreamNotFound(_))
    ));
    // The subjects are free again, and the old messages are gone.
    store.create_stream(stream("b", "a.*")).await.unwrap();
    assert!(store.read("b", 1, 10, 1 << 20).unwrap().is_empty());
}

#[tokio::test]
async fn retention_by_count_bytes_and_age() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut c = stream("n", "n.>");
    c.max_msgs = 3;
    store.create_stream(c).await.unwrap();
    let mut c = stream("b", "b.>");
    c.max_bytes = 25;
    store.create_stream(c).await.unwrap();
    let mut c = stream("t", "t.>");
    c.max_age_ms = 60_000;
    c.dedup_window_ms = 60_000;
    store.create_stream(c).await.unwrap();
    for i in 0..5u8 {
        store.append(vec![msg("n.x", None, &[i])]).await;
        store.append(vec![msg("b.x", None, &[i; 10])]).await;
        store
            .append(vec![msg("t.x", Some(&format!("id{i}")), &[i])])
            .await;
    }
    let n = store.stream_info("n").unwrap().state;
    assert_eq!((n.msgs, n.first_seq, n.last_seq), (3, 3, 5));
    assert_eq!(store.read("n", 0, 10, 1 << 20).unwrap()[0].payload[0], 2);
    let b = store.stream_info("b").unwrap().state;
    assert_eq!((b.msgs, b.bytes), (2, 20));
    // Age: nothing is old yet; two minutes later everything is, and ids expire too.
    let now = tern_proto_now();
    assert_eq!(store.purge(now).await.unwrap().messages, 0);
    let r = store.purge(now + 120_000).await.unwrap();
    assert_eq!(
        r.messages, 5,
        "only the stream with an age limit loses messages"
    );
    assert_eq!(r.dedup_entries, 5);
    let t = store.stream_info("t").unwrap().state;
    assert_eq!((t.msgs, t.first_seq, t.last_seq), (0, 6, 5));
    let again = store.append(vec![msg("t.x", Some("id0"), b"new")]).await;
    let again = again[0].as_ref().unwrap();
    assert_eq!(
        (again.seq, again.duplicate),
        (6, false),
        "an expired id is accepted again"
    );
}

fn tern_proto_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn retention_inside_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut c = stream("n", "n.>");
    c.max_msgs = 3;
    store.create_stream(c).await.unwrap();
    let batch = (0..5u8).map(|i| msg("n.x", None, &[i])).collect();
    store.append(batch).await;
    let n = store.stream_info("n").unwrap().state;
    assert_eq!((n.msgs, n.first_seq, n.last_seq), (3, 3, 5));
    let got: Vec<u8> = store
        .read("n", 1, 10, 1 << 20)
        .unwrap()
        .iter()
        .map(|m| m.payload[0])
        .collect();
    assert_eq!(got, vec![2, 3, 4]);
    assert!(
        store.get("n", 2).unwrap().is_none(),
        "purged messages are gone"
    );
    assert_eq!(store.get("n", 4).unwrap().unwrap().payload[0], 3);
    store.close();
    let store = open(dir.path());
    let got: Vec<u8> = store
        .read("n", 0, 10, 1 << 20)
        .unwrap()
        .iter()
        .map(|m| m.payload[0])
        .collect();
    assert_eq!(got, vec![2, 3, 4], "the floor survives a reopen");
}

#[tokio::test]
async fn time_lookup_and_start_positions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create_stream(stream("s", "s.>")).await.unwrap();
    store
        .append(vec![msg("s.a", None, b"1"), msg("s.a", None, b"2")])
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let mid = tern_proto_now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    store.append(vec![msg("s.a", None, b"3")]).await;
    assert_eq!(store.resolve_start("s", StartPosition::Start).unwrap(), 1);
    assert_eq!(store.resolve_start("s", StartPosition::New).unwrap(), 4);
    assert_eq!(store.resolve_start("s", StartPosition::Seq(2)).unwrap(), 2);
    assert_eq!(
        store.resolve_start("s", StartPosition::Time(mid)).unwrap(),
        3
    );
    assert_eq!(store.resolve_start("s", StartPosition::Time(0)).unwrap(), 1);
    assert_eq!(
        store
            .resolve_start("s", StartPosition::Time(u64::MAX >> 17))
            .unwrap(),
        4
    );
}

#[tokio::test]
async fn group_state_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create_stream(stream("s", "s.>")).await.unwrap();
    store
        .create_stream(stream("s-dlq", "$dlq.s.>"))
        .await
        .unwrap();
    let (g, rows) = store
        .open_group("s", "g", "s.>", 1000, 3, StartPosition::Start)
        .await
        .unwrap();
    assert_eq!((g.cursor, rows.len()), (1, 0));
    store
        .update_group(GroupUpdate {
            stream: "s".into(),
            group: "g".into(),
            cursor: Some(3),
            upsert: vec![PendingRow {
                seq: 5,
                deliveries: 2,
                acked: true,
            }],
            dead_letters: vec![msg("$dlq.s.g", Some("dlq:1"), b"dead")],
        })
        .await
        .unwrap();
    store.close();
    let store = open(dir.path());
    let (g, rows) = store
        .open_group("s", "g", "s.>", 1000, 3, StartPosition::New)
        .await
        .unwrap();
    assert_eq!(
        g.cursor, 3,
        "floor survives; the start position only applies to new groups"
    );
    assert_eq!(
        rows,
        vec![PendingRow {
            seq: 5,
            deliveries: 2,
            acked: true
        }]
    );
    assert_eq!(store.stream_info("s-dlq").unwrap().state.msgs, 1);
    assert!(matches!(
        store
            .open_group("s", "g", "s.other", 1000, 3, StartPosition::Start)
            .await,
        Err(StoreError::GroupMismatch(_))
    ));
    // Moving the floor past a row removes it.
    store
        .update_group(GroupUpdate {
            stream: "s".into(),
            group: "g".into(),
            cursor: Some(6),
            ..Default::default()
        })
        .await
        .unwrap();
    let (g, rows) = store
        .open_group("s", "g", "s.>", 1000, 3, StartPosition::Start)
        .await
        .unwrap();
    assert_eq!((g.cursor, rows.len()), (6, 0));
}

#[tokio::test]
async fn full_disk_fails_writes_and_keeps_committed_data() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultSwitch::default());
    let mut opts = StoreOptions::new(dir.path().join("t.redb"));
    opts.faults = faults.clone();
    let store = Store::open(opts.clone()).unwrap();
    store.create_stream(stream("s", "s.>")).await.unwrap();
    let ok = store.append(vec![msg("s.a", Some("kept"), b"kept")]).await;
    assert!(ok[0].is_ok());
    faults.set_disk_full(true);
    let failed = store
        .append(vec![msg("s.a", Some("lost"), &[0u8; 4096])])
        .await;
    assert!(
        matches!(
            failed[0],
            Err(StoreError::DiskFull) | Err(StoreError::Storage(_))
        ),
        "{:?}",
        failed[0]
    );
    faults.set_disk_full(false);
    // Reads still see what was committed.
    let msgs = store.read("s", 1, 10, 1 << 20).unwrap();
    assert_eq!(msgs.len(), 1);
    // Once space is back, the same store accepts writes again.
    let after = store
        .append(vec![msg("s.a", Some("after"), b"after")])
        .await;
    assert!(after[0].is_ok(), "{:?}", after[0]);
    store.close();
    let store = Store::open(opts).unwrap();
    let msgs = store.read("s", 1, 10, 1 << 20).unwrap();
    let ids: Vec<&str> = msgs.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["kept", "after"],
        "committed messages survive; the failed one is absent"
    );
    let r = store.append(vec![msg("s.a", Some("lost"), b"retry")]).await;
    let r = r[0].as_ref().unwrap();
    assert_eq!(
        (r.seq, r.duplicate),
        (3, false),
        "the failed write left no dedup entry"
    );
}

#[tokio::test]
async fn node_state_keys_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .put_state(vec![
            ("plugin/kv/a/x".into(), Some(b"1".to_vec())),
            ("plugin/kv/a/y".into(), Some(b"2".to_vec())),
            ("plugin/kv/b/x".into(), Some(b"3".to_vec())),
            ("plugin/registry".into(), Some(b"{}".to_vec())),
        ])
        .await
        .unwrap();
    store
        .put_state(vec![("plugin/kv/a/x".into(), None)])
        .await
        .unwrap();
    store.close();

    let store = open(dir.path());
    assert_eq!(
        store.get_state("plugin/registry").unwrap(),
        Some(b"{}".to_vec())
    );
    assert_eq!(store.get_state("plugin/kv/a/x").unwrap(), None);
    let a = store.scan_state("plugin/kv/a/").unwrap();
    assert_eq!(a, vec![("plugin/kv/a/y".to_string(), b"2".to_vec())]);
    assert_eq!(store.scan_state("plugin/kv/").unwrap().len(), 2);
    assert!(store.scan_state("nothing/").unwrap().is_empty());
}

#[tokio::test]
async fn whole_chunk_reads_return_every_message_of_the_chunks_they_touch() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create_stream(stream("s", "s.>")).await.unwrap();
    // Three commits, so three chunks of 10 messages: 1..=10, 11..=20, 21..=30.
    for c in 0..3 {
        let batch = (0..10).map(|i| msg("s.x", None, &[c * 10 + i])).collect();
        assert!(store.append(batch).await.iter().all(Result::is_ok));
    }
    let seqs = |v: Vec<tern_store::StoredMessage>| v.iter().map(|m| m.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(store.read_chunks("s", 1, 5, usize::MAX).unwrap()),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(store.read_chunks("s", 5, 1, usize::MAX).unwrap()),
        (5..=10).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(store.read_chunks("s", 11, 15, usize::MAX).unwrap()),
        (11..=30).collect::<Vec<_>>()
    );
    assert!(store
        .read_chunks("s", 31, 1, usize::MAX)
        .unwrap()
        .is_empty());
    // Plain reads still stop at the limit, inside a chunk or across chunks.
    assert_eq!(
        seqs(store.read("s", 5, 3, usize::MAX).unwrap()),
        vec![5, 6, 7]
    );
    assert_eq!(
        seqs(store.read("s", 9, 4, usize::MAX).unwrap()),
        vec![9, 10, 11, 12]
    );
}

#[tokio::test]
async fn records_read_in_place_equal_the_decoded_messages() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create_stream(stream("s", "s.>")).await.unwrap();
    for c in 0..2u8 {
        let batch = (0..10u8)
            .map(|i| {
                let mut m = msg("s.x", Some(&format!("id-{c}-{i}")), &[c, i]);
                m.key = (i % 2 == 0).then(|| format!("k{i}"));
                m.headers = vec![("h".into(), format!("v{i}"))];
                m
            })
            .collect();
        assert!(store.append(batch).await.iter().all(Result::is_ok));
    }
    for from in [1, 4, 11] {
        let decoded = store.read_chunks("s", from, 1, usize::MAX).unwrap();
        let records = store.read_records("s", from, 1, usize::MAX).unwrap();
        assert_eq!(records.len(), decoded.len(), "from {from}");
        for (r, m) in records.iter().zip(&decoded) {
            assert_eq!(r.seq, m.seq);
            assert_eq!(&r.view().unwrap().to_message(), m);
        }
    }
    assert!(store
        .read_records("s", 21, 1, usize::MAX)
        .unwrap()
        .is_empty());
}
