//! Storage append path: one group commit (one redb transaction, one fsync) of N 1 KiB
//! messages with producer ids (so the dedup index is written too).

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tern_proto::{PubMessage, StreamConfig};
use tern_store::{Store, StoreOptions};

fn batch(n: usize, round: &mut u64) -> Vec<PubMessage> {
    let payload = Bytes::from(vec![7u8; 1024]);
    (0..n)
        .map(|_| {
            *round += 1;
            PubMessage {
                subject: "bench.a".into(),
                id: Some(format!("producer-1-{round:012}")),
                key: None,
                headers: vec![],
                payload: payload.clone(),
            }
        })
        .collect()
}

fn append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreOptions::new(dir.path().join("bench.redb"))).unwrap();
    rt.block_on(store.create_stream(StreamConfig {
        name: "bench".into(),
        subjects: vec!["bench.>".into()],
        ..Default::default()
    }))
    .unwrap();
    let mut g = c.benchmark_group("store_append");
    g.sample_size(20);
    let mut round = 0u64;
    for n in [1usize, 100, 1000] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("commit_{n}x1KiB"), |b| {
            b.iter_batched(
                || batch(n, &mut round),
                |msgs| {
                    let r = rt.block_on(store.append(msgs));
                    assert!(r.iter().all(|r| r.is_ok()));
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
