//! Store snapshots: how long writing and installing one takes for a store of N 1 KiB
//! messages with ids and keys (so the dedup and key indexes are in it too). A snapshot is
//! made when a region purges its log, and sent to a member that lags too far behind.
//!
//! `cargo bench -p tern-store --bench snapshot [-- MESSAGES]` (default 200,000).

use std::io::{Seek, SeekFrom};
use std::time::Instant;

use bytes::Bytes;
use tern_proto::{PubMessage, StreamConfig};
use tern_store::{Store, StoreOptions};

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source = Store::open(StoreOptions::new(dir.path().join("source.redb"))).unwrap();
    rt.block_on(async {
        source
            .create_stream(StreamConfig {
                name: "bench".into(),
                subjects: vec!["bench.>".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        let payload = Bytes::from(vec![7u8; 1024]);
        for start in (0..n).step_by(4096) {
            let batch = (start..(start + 4096).min(n))
                .map(|i| PubMessage {
                    subject: "bench.a".into(),
                    id: Some(format!("producer-1-{i:012}")),
                    key: Some(format!("key-{}", i % 1000)),
                    headers: vec![],
                    payload: payload.clone(),
                })
                .collect();
            for r in source.append(batch).await {
                r.unwrap();
            }
        }
    });
    let path = dir.path().join("snap");
    let started = Instant::now();
    let snap = rt.block_on(source.snapshot()).unwrap();
    let mut file = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let bytes = snap.write_to(&mut file).unwrap();
    file.sync_all().unwrap();
    let written = started.elapsed();
    drop(snap);

    let target = Store::open(StoreOptions::new(dir.path().join("target.redb"))).unwrap();
    file.seek(SeekFrom::Start(0)).unwrap();
    let started = Instant::now();
    let rows = rt.block_on(target.install_snapshot(file)).unwrap();
    let installed = started.elapsed();
    let mib = bytes as f64 / (1024.0 * 1024.0);
    println!(
        "{n} messages: snapshot {mib:.0} MiB, {rows} rows; written and fsynced in {:.2} s \
         ({:.0} MiB/s); checked and installed in {:.2} s ({:.0} MiB/s)",
        written.as_secs_f64(),
        mib / written.as_secs_f64(),
        installed.as_secs_f64(),
        mib / installed.as_secs_f64(),
    );
}
