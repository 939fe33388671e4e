use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tern_proto::{limits::FRAME_BYTES_MAX as FRAME, AckLevel, Frame, PubMessage};

fn batch(n: usize) -> Frame {
    let msg = PubMessage {
        subject: "orders.eu.created".into(),
        id: Some("order-000000001".into()),
        key: Some("customer-42".into()),
        headers: vec![("content-type".into(), "application/json".into())],
        payload: Bytes::from(vec![7u8; 1024]),
    };
    Frame::PublishBatch {
        req_id: 1,
        ack: AckLevel::Local,
        msgs: vec![msg; n],
    }
}

fn codec(c: &mut Criterion) {
    let frame = batch(1000);
    let encoded = frame.to_bytes();
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("encode_batch_1000x1KiB", |b| {
        let mut out = BytesMut::with_capacity(encoded.len());
        b.iter(|| {
            out.clear();
            frame.encode(&mut out);
        })
    });
    g.bench_function("decode_batch_1000x1KiB", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(&encoded[..]);
            Frame::decode(&mut buf, FRAME).unwrap().unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
