//! On-disk format: a store file written by format version 1 (checked in under
//! tests/fixtures) opens and reads back exactly, so a later version that changes the
//! layout must keep reading it (or fail with a clear error, never misread it).
//!
//! Regenerate the fixture only when deliberately starting a new format version:
//! `TERN_WRITE_FIXTURE=1 cargo test -p tern-store --test format`.

use bytes::Bytes;
use tern_proto::{PubMessage, StartPosition, StreamConfig};
use tern_store::{GroupUpdate, PendingRow, Store, StoreOptions};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/store-v1.redb");

async fn write_fixture(path: &std::path::Path) {
    let _ = std::fs::remove_file(path);
    let mut opts = StoreOptions::new(path);
    opts.origin = "eu-west".into();
    let store = Store::open(opts).unwrap();
    store
        .create_stream(StreamConfig {
            name: "orders".into(),
            subjects: vec!["orders.>".into()],
            max_age_ms: 0,
            max_bytes: 0,
            max_msgs: 100,
            dedup_window_ms: 10 * 365 * 24 * 3600 * 1000,
        })
        .await
        .unwrap();
    let msgs = (1..=3)
        .map(|i| PubMessage {
            subject: format!("orders.eu.{i}"),
            id: Some(format!("order-{i}")),
            key: Some("customer-7".into()),
            headers: vec![("content-type".into(), "text/plain".into())],
            payload: Bytes::from(format!("payload {i}")),
        })
        .collect();
    store.append(msgs).await;
    store
        .open_group(
            "orders",
            "billing",
            "orders.>",
            30_000,
            5,
            StartPosition::Start,
        )
        .await
        .unwrap();
    store
        .update_group(GroupUpdate {
            stream: "orders".into(),
            group: "billing".into(),
            cursor: Some(2),
            upsert: vec![PendingRow {
                seq: 3,
                deliveries: 2,
                acked: true,
            }],
            dead_letters: vec![],
        })
        .await
        .unwrap();
    store.close();
}

#[tokio::test]
async fn reads_format_version_1() {
    let fixture = std::path::Path::new(FIXTURE);
    if std::env::var_os("TERN_WRITE_FIXTURE").is_some() {
        write_fixture(fixture).await;
    }
    // Work on a copy: opening may repair or upgrade in place.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("store.redb");
    std::fs::copy(fixture, &copy).expect("fixture present");
    let store = Store::open(StoreOptions::new(&copy)).unwrap();
    let info = store.stream_info("orders").unwrap();
    assert_eq!(info.config.subjects, vec!["orders.>".to_string()]);
    assert_eq!(info.config.max_msgs, 100);
    assert_eq!(
        (info.state.first_seq, info.state.last_seq, info.state.msgs),
        (1, 3, 3)
    );
    let msgs = store.read("orders", 1, 10, 1 << 20).unwrap();
    assert_eq!(msgs.len(), 3);
    for (i, m) in msgs.iter().enumerate() {
        let n = i as u64 + 1;
        assert_eq!(m.seq, n);
        assert_eq!(m.id, format!("order-{n}"));
        assert_eq!(m.subject, format!("orders.eu.{n}"));
        assert_eq!(m.key.as_deref(), Some("customer-7"));
        assert_eq!(m.key_seq, n);
        assert_eq!(m.origin, "eu-west");
        assert_eq!(m.origin_seq, n);
        assert_eq!(
            m.headers,
            vec![("content-type".to_string(), "text/plain".to_string())]
        );
        assert_eq!(m.payload, Bytes::from(format!("payload {n}")));
    }
    // The dedup index written then still answers.
    let again = store
        .append(vec![PubMessage {
            subject: "orders.eu.1".into(),
            id: Some("order-2".into()),
            ..Default::default()
        }])
        .await;
    let again = again[0].as_ref().unwrap();
    assert_eq!((again.seq, again.duplicate), (2, true));
    // The upgrade of the dedup index (format 2) was committed: a reopened store still
    // finds every id, and takes a new one.
    store.close();
    let store = Store::open(StoreOptions::new(&copy)).unwrap();
    let again = store
        .append(
            ["order-1", "order-3", "order-4"]
                .iter()
                .map(|id| PubMessage {
                    subject: "orders.eu.1".into(),
                    id: Some(id.to_string()),
                    ..Default::default()
                })
                .collect(),
        )
        .await;
    let seqs: Vec<_> = again
        .iter()
        .map(|r| r.as_ref().map(|r| (r.seq, r.duplicate)).unwrap())
        .collect();
    assert_eq!(seqs, vec![(1, true), (3, true), (4, false)]);
    // Its stream row has no own-origin counter; the counter starts at last_seq (every
    // message was local then), so the origin sequence goes on without a gap.
    let new = store.get("orders", 4).unwrap().unwrap();
    assert_eq!((new.id.as_str(), new.origin_seq), ("order-4", 4));
    assert_eq!(
        store.vector("orders").unwrap(),
        vec![("local".to_string(), 4)]
    );
    let (g, rows) = store
        .open_group(
            "orders",
            "billing",
            "orders.>",
            30_000,
            5,
            StartPosition::Start,
        )
        .await
        .unwrap();
    assert_eq!(g.cursor, 2);
    assert_eq!(
        rows,
        vec![PendingRow {
            seq: 3,
            deliveries: 2,
            acked: true
        }]
    );
}
