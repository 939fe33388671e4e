//! Store snapshots: a store installed from another's snapshot holds the same streams,
//! messages, dedup index, version vectors, versions index, consumer groups and node state,
//! and keeps working from there; snapshots of the version before vectors and the versions
//! index still install; a damaged snapshot is refused and the store it was meant
//! for is left as it was.

use std::io::{Seek, SeekFrom, Write};

use bytes::Bytes;
use tern_proto::{PubMessage, StartPosition, StreamConfig};
use tern_store::{
    GroupUpdate, MergeReport, PendingRow, Store, StoreError, StoreOptions, StoredMessage,
};

fn open(dir: &std::path::Path, name: &str) -> Store {
    Store::open(StoreOptions::new(dir.join(name))).unwrap()
}

fn msg(subject: &str, id: &str, key: &str) -> PubMessage {
    PubMessage {
        subject: subject.into(),
        id: Some(id.into()),
        key: Some(key.into()),
        headers: vec![("h".into(), "v".into())],
        payload: Bytes::from(format!("payload {id}")),
    }
}

async fn stream(store: &Store, name: &str) {
    store
        .create_stream(StreamConfig {
            name: name.into(),
            subjects: vec![format!("{name}.>")],
            ..StreamConfig::default()
        })
        .await
        .unwrap();
}

/// Everything a reader can see of a store, as comparable text.
fn contents(store: &Store) -> Vec<String> {
    let mut out = Vec::new();
    for info in store.list_streams() {
        out.push(format!("{info:?}"));
        out.push(format!("{:?}", store.vector(&info.config.name).unwrap()));
        for m in store
            .read(&info.config.name, 0, 10_000, usize::MAX)
            .unwrap()
        {
            out.push(format!("{m:?}"));
        }
    }
    out.push(format!("{:?}", store.group_cursor("orders", "billing")));
    out.push(format!("{:?}", store.scan_state("").unwrap()));
    out
}

/// A store with two streams, a duplicate, an advanced consumer group and node state.
async fn source(dir: &std::path::Path) -> Store {
    let a = open(dir, "a.redb");
    stream(&a, "orders").await;
    stream(&a, "audit").await;
    let mut batch: Vec<_> = (0..300)
        .map(|i| msg("orders.eu", &format!("o{i}"), &format!("k{}", i % 7)))
        .collect();
    batch.push(msg("audit.x", "a0", "k"));
    for r in a.append(batch).await {
        r.unwrap();
    }
    assert!(
        a.append(vec![msg("orders.eu", "o5", "k5")]).await[0]
            .as_ref()
            .unwrap()
            .duplicate
    );
    a.open_group(
        "orders",
        "billing",
        "orders.>",
        30_000,
        5,
        StartPosition::Start,
    )
    .await
    .unwrap();
    a.update_group(GroupUpdate {
        stream: "orders".into(),
        group: "billing".into(),
        cursor: Some(40),
        upsert: vec![PendingRow {
            seq: 42,
            deliveries: 2,
            acked: true,
        }],
        dead_letters: Vec::new(),
    })
    .await
    .unwrap();
    a.put_state(vec![("plugin/registry".into(), Some(b"{}".to_vec()))])
        .await
        .unwrap();
    a
}

async fn snapshot_file(store: &Store, dir: &std::path::Path) -> std::fs::File {
    let snap = store.snapshot().await.unwrap();
    let mut file = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join("snap"))
        .unwrap();
    // A prefix the caller owns (a region writes its own header first).
    file.write_all(b"header").unwrap();
    let n = snap.write_to(&mut file).unwrap();
    assert_eq!(file.metadata().unwrap().len(), n + 6);
    file.seek(SeekFrom::Start(6)).unwrap();
    file
}

#[tokio::test]
async fn installed_snapshot_reproduces_the_store_and_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let a = source(dir.path()).await;
    let file = snapshot_file(&a, dir.path()).await;

    // The target has state of its own, all of which the snapshot replaces.
    let b = open(dir.path(), "b.redb");
    stream(&b, "stale").await;
    b.append(vec![msg("stale.x", "s", "k")]).await[0]
        .as_ref()
        .unwrap();
    b.put_state(vec![("plugin/kv/x".into(), Some(b"old".to_vec()))])
        .await
        .unwrap();
    let rows = b.install_snapshot(file).await.unwrap();
    assert!(rows > 300, "{rows} rows");
    assert_eq!(contents(&a), contents(&b));

    // Both go on identically: the dedup index came along, and new messages continue the
    // sequence and key sequences.
    for s in [&a, &b] {
        let r = s.append(vec![msg("orders.eu", "o7", "k0")]).await;
        assert!(r[0].as_ref().unwrap().duplicate);
        let r = s.append(vec![msg("orders.eu", "new", "k0")]).await;
        assert_eq!(r[0].as_ref().unwrap().seq, 301);
    }
    let tail = |s: &Store| {
        let m = s.read("orders", 301, 1, usize::MAX).unwrap();
        (m[0].id.clone(), m[0].key_seq)
    };
    assert_eq!(tail(&a), tail(&b));

    // Reopened, the installed store is the same.
    b.close();
    let b = open(dir.path(), "b.redb");
    let r = b.append(vec![msg("orders.eu", "again", "k1")]).await;
    assert_eq!(r[0].as_ref().unwrap().seq, 302);
    assert!(b.stream_info("stale").is_err());
}

#[tokio::test]
async fn damaged_snapshot_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = source(dir.path()).await;
    let mut good = Vec::new();
    a.snapshot().await.unwrap().write_to(&mut good).unwrap();

    let b = open(dir.path(), "b.redb");
    stream(&b, "kept").await;
    b.append(vec![msg("kept.x", "s", "k")]).await[0]
        .as_ref()
        .unwrap();
    let before = contents(&b);

    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    let mut bad_table = good.clone();
    bad_table[9] = 0x7f;
    let damaged = [
        ("truncated", good[..good.len() - 9].to_vec()),
        ("flipped byte", flipped),
        ("unknown table", bad_table),
        ("empty", Vec::new()),
        ("not a snapshot", b"TERNSTOX\x01\x00".to_vec()),
    ];
    for (what, bytes) in damaged {
        let path = dir.path().join(what);
        std::fs::write(&path, &bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        match b.install_snapshot(file).await {
            Err(StoreError::BadSnapshot(why)) => println!("{what}: {why}"),
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(contents(&b), before, "{what} changed the store");
    }
    // The store still takes writes.
    let r = b.append(vec![msg("kept.x", "t", "k")]).await;
    assert_eq!(r[0].as_ref().unwrap().seq, 2);
}

/// Messages region "us" accepted, as a merge takes them.
fn from_us(seqs: std::ops::RangeInclusive<u64>) -> Vec<StoredMessage> {
    seqs.map(|s| StoredMessage {
        subject: "orders.us".into(),
        id: format!("us-{s}"),
        key: Some("k0".into()),
        payload: Bytes::from(format!("us {s}")),
        origin: "us".into(),
        origin_seq: s,
        key_seq: 100 + s,
        hlc: (1_000 + s) << 16,
        ..StoredMessage::default()
    })
    .collect()
}

#[tokio::test]
async fn a_snapshot_carries_the_version_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let a = source(dir.path()).await;
    a.merge("orders", from_us(1..=3), Vec::new(), Vec::new())
        .await
        .unwrap();
    let file = snapshot_file(&a, dir.path()).await;
    let b = open(dir.path(), "b.redb");
    b.install_snapshot(file).await.unwrap();
    assert_eq!(contents(&a), contents(&b));
    let want = vec![("local".to_string(), 300), ("us".to_string(), 3)];
    assert_eq!(b.vector("orders").unwrap(), want);
    // Both go on identically: covered messages stay covered, and the own counter and
    // the key index continue.
    for s in [&a, &b] {
        let r = s
            .merge("orders", from_us(2..=4), Vec::new(), Vec::new())
            .await
            .unwrap();
        assert_eq!(
            r,
            MergeReport {
                stored: 1,
                covered: 2,
                duplicates: 0,
                conflicts: 0,
            }
        );
        s.append(vec![msg("orders.eu", "after", "k0")]).await[0]
            .as_ref()
            .unwrap();
    }
    let tail = |s: &Store| {
        let m = s.read("orders", 304, 2, usize::MAX).unwrap();
        let v = s.vector("orders").unwrap();
        (m[0].clone(), (m[1].origin_seq, m[1].key_seq), v)
    };
    assert_eq!(tail(&a), tail(&b));
    assert_eq!(tail(&b).1, (301, 105));
}

/// `snap` as a snapshot of an older `version` wrote it: without the rows of the tables
/// that version did not have (10, the vectors, and 11, the versions index, before version
/// 2), with that version byte, and the row count and checksum to match.
fn older(snap: &[u8], version: u8) -> Vec<u8> {
    let last_table = match version {
        1 => 9,
        v => panic!("no layout for version {v}"),
    };
    let mut out = snap[..9].to_vec();
    out[8] = version;
    let (mut at, mut rows) = (9, 0u64);
    while snap[at] != 0 {
        let mut end = at + 1;
        for _ in 0..2 {
            let len = u32::from_le_bytes(snap[end..end + 4].try_into().unwrap());
            end += 4 + len as usize;
        }
        if snap[at] <= last_table {
            out.extend_from_slice(&snap[at..end]);
            rows += 1;
        }
        at = end;
    }
    out.push(0);
    out.extend_from_slice(&rows.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

async fn snapshot_bytes(store: &Store) -> Vec<u8> {
    let mut snap = Vec::new();
    store.snapshot().await.unwrap().write_to(&mut snap).unwrap();
    assert_eq!(snap[8], 2);
    snap
}

#[tokio::test]
async fn a_version_1_snapshot_installs_with_empty_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let a = source(dir.path()).await;
    let snap = older(&snapshot_bytes(&a).await, 1);
    let path = dir.path().join("v1");
    std::fs::write(&path, &snap).unwrap();

    // The target's own vectors are replaced like every other table.
    let b = open(dir.path(), "b.redb");
    stream(&b, "orders").await;
    b.merge("orders", from_us(1..=2), Vec::new(), Vec::new())
        .await
        .unwrap();
    b.install_snapshot(std::fs::File::open(&path).unwrap())
        .await
        .unwrap();
    assert_eq!(contents(&a), contents(&b));
    assert_eq!(
        b.vector("orders").unwrap(),
        vec![("local".to_string(), 300)]
    );
    assert!(a.version("orders", "k0", 43).unwrap().is_some());
    assert_eq!(b.version("orders", "k0", 43).unwrap(), None);
}

/// A merged version that conflicts with one of this store's own, and wins.
fn conflicting(key_seq: u64, origin: &str, hlc: u64) -> StoredMessage {
    StoredMessage {
        subject: format!("orders.{origin}"),
        id: format!("{origin}-k0-{key_seq}"),
        key: Some("k0".into()),
        origin: origin.into(),
        origin_seq: 1,
        key_seq,
        hlc,
        ..StoredMessage::default()
    }
}

#[tokio::test]
async fn a_version_1_snapshot_installs_with_an_empty_versions_index() {
    let dir = tempfile::tempdir().unwrap();
    let a = source(dir.path()).await;
    let now = snapshot_bytes(&a).await;
    let path = dir.path().join("v1");
    std::fs::write(&path, older(&now, 1)).unwrap();
    let b = open(dir.path(), "b.redb");
    b.install_snapshot(std::fs::File::open(&path).unwrap())
        .await
        .unwrap();
    assert_eq!(contents(&a), contents(&b));
    assert_eq!(b.vector("orders").unwrap(), a.vector("orders").unwrap());
    assert_eq!(b.version("orders", "k0", 43).unwrap(), None);
    // A version it holds is not compared: no conflict, where `a` finds one.
    let late = (tern_store::now_ms() + 60_000) << 16;
    for (s, conflicts) in [(&a, 1), (&b, 0)] {
        let r = s
            .merge(
                "orders",
                vec![conflicting(43, "ap", late)],
                Vec::new(),
                Vec::new(),
            )
            .await
            .unwrap();
        assert_eq!(r.conflicts, conflicts);
    }
    // A snapshot of version 1 holding the mesh's tables is damaged.
    let mut v1_with_mesh = now.clone();
    v1_with_mesh[8] = 1;
    let body = v1_with_mesh.len() - 4;
    let crc = crc32fast::hash(&v1_with_mesh[..body]);
    v1_with_mesh[body..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &v1_with_mesh).unwrap();
    match b
        .install_snapshot(std::fs::File::open(&path).unwrap())
        .await
    {
        Err(StoreError::BadSnapshot(why)) => assert!(why.contains("table 1"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_snapshot_carries_the_versions_index() {
    let dir = tempfile::tempdir().unwrap();
    let a = source(dir.path()).await;
    let late = (tern_store::now_ms() + 60_000) << 16;
    let r = a
        .merge(
            "orders",
            vec![conflicting(43, "us", late)],
            Vec::new(),
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.conflicts, 1);
    let file = snapshot_file(&a, dir.path()).await;
    let b = open(dir.path(), "b.redb");
    b.install_snapshot(file).await.unwrap();
    // The conflict record came along with every other message.
    assert_eq!(contents(&a), contents(&b));
    for (key, key_seq) in [("k0", 43), ("k0", 10), ("k6", 42), ("k0", 44)] {
        assert_eq!(
            a.version("orders", key, key_seq).unwrap(),
            b.version("orders", key, key_seq).unwrap(),
            "{key} {key_seq}"
        );
    }
    assert_eq!(b.version("orders", "k0", 43).unwrap().unwrap().origin, "us");
    // Both go on alike: a third region's version is compared with the winner.
    let mut decided = Vec::new();
    for s in [&a, &b] {
        let r = s
            .merge(
                "orders",
                vec![conflicting(43, "ap", 5 << 16)],
                Vec::new(),
                Vec::new(),
            )
            .await
            .unwrap();
        assert_eq!(r.conflicts, 1);
        let records = s.read("orders-conflicts", 2, 10, usize::MAX).unwrap();
        decided.push((records[0].id.clone(), records[0].headers.clone()));
    }
    assert_eq!(decided[0], decided[1]);
    assert_eq!(decided[0].0, "conflict:orders:k0:43:ap:1");
}
