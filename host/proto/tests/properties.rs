//! Properties of the frame codec, checked with proptest, and unit tests for every way a
//! frame can be refused.
//!
//! * Round trip: any frame of any kind whose strings and counts are within the limits
//!   encodes and decodes to the same frame, whether the bytes arrive at once, byte by byte
//!   or split at an arbitrary point (decode returns `Ok(None)` until the frame is whole and
//!   leaves the buffer untouched meanwhile), and frames written back to back decode in order.
//! * Robustness: decoding arbitrary bytes never panics, never consumes bytes without
//!   returning a frame, and never reserves more than the frame limit allows; a length
//!   prefix claiming 4 GiB is refused with `FrameTooLarge` before anything is buffered.
//! * Truncation: a valid frame cut at any point is `Ok(None)` while the length prefix
//!   promises more, and `Truncated` when the prefix is rewritten to the shortened body.
//! * Refusals: unknown kinds, trailing bytes, bad UTF-8, bad booleans and enum tags,
//!   over-long strings and over-large counts give the documented `DecodeError` variants.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use tern_proto::limits::{
    ACK_SEQS_MAX, BATCH_MESSAGES_MAX, FRAME_BYTES_MAX, HEADERS_MAX, NAME_BYTES_MAX,
    STREAM_SUBJECTS_MAX,
};
use tern_proto::{
    kind, AckLevel, DecodeError, Delivery, ErrorBody, ErrorCode, Frame, MeshSubscribe,
    PluginDeploy, PubMessage, Receipt, Stamp, StartPosition, StreamConfig, StreamInfo, StreamState,
    Subscribe, LEN_PREFIX_BYTES,
};

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

/// A string the codec accepts: UTF-8 of at most NAME_BYTES_MAX bytes. Mostly short, any
/// Unicode, sometimes exactly at the limit.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "\\PC{0,24}",
        1 => "[a-z.>*]{0,8}",
        1 => Just("x".repeat(NAME_BYTES_MAX)),
        // 341 three-byte characters plus one byte: exactly 1024 bytes.
        1 => Just(format!("{}a", "\u{20ac}".repeat(341))),
    ]
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text())
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    vec((text(), text()), 0..4)
}

fn payload() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..300).prop_map(Bytes::from)
}

fn ack_level() -> impl Strategy<Value = AckLevel> {
    prop_oneof![
        Just(AckLevel::Local),
        Just(AckLevel::Quorum),
        Just(AckLevel::Leader)
    ]
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    (1u16..=21).prop_map(ErrorCode::from_u16)
}

fn error_body() -> impl Strategy<Value = ErrorBody> {
    (error_code(), text()).prop_map(|(code, message)| ErrorBody { code, message })
}

fn pub_message() -> impl Strategy<Value = PubMessage> {
    (text(), opt_text(), opt_text(), headers(), payload()).prop_map(
        |(subject, id, key, headers, payload)| PubMessage {
            subject,
            id,
            key,
            headers,
            payload,
        },
    )
}

fn receipt() -> impl Strategy<Value = Receipt> {
    (text(), text(), any::<u64>(), any::<bool>(), ack_level()).prop_map(
        |(id, stream, seq, duplicate, level)| Receipt {
            id,
            stream,
            seq,
            duplicate,
            level,
        },
    )
}

fn stream_config() -> impl Strategy<Value = StreamConfig> {
    (
        text(),
        vec(text(), 0..5),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(name, subjects, max_age_ms, max_bytes, max_msgs, dedup_window_ms)| StreamConfig {
                name,
                subjects,
                max_age_ms,
                max_bytes,
                max_msgs,
                dedup_window_ms,
            },
        )
}

fn stream_info() -> impl Strategy<Value = StreamInfo> {
    (stream_config(), any::<[u64; 5]>()).prop_map(|(config, s)| StreamInfo {
        config,
        state: StreamState {
            first_seq: s[0],
            last_seq: s[1],
            msgs: s[2],
            bytes: s[3],
            last_time_ms: s[4],
        },
    })
}

fn start_position() -> impl Strategy<Value = StartPosition> {
    prop_oneof![
        Just(StartPosition::Start),
        Just(StartPosition::New),
        any::<u64>().prop_map(StartPosition::Seq),
        any::<u64>().prop_map(StartPosition::Time),
    ]
}

fn subscribe() -> impl Strategy<Value = Subscribe> {
    (
        any::<u64>(),
        text(),
        opt_text(),
        start_position(),
        any::<[u32; 3]>(),
    )
        .prop_map(|(req_id, subject, group, start, n)| Subscribe {
            req_id,
            subject,
            group,
            start,
            credit: n[0],
            ack_wait_ms: n[1],
            max_deliveries: n[2],
        })
}

fn mesh_subscribe() -> impl Strategy<Value = MeshSubscribe> {
    (
        any::<u64>(),
        text(),
        text(),
        any::<u64>(),
        vec((text(), any::<u64>()), 0..4),
        any::<u32>(),
    )
        .prop_map(
            |(req_id, stream, region, after, vector, credit)| MeshSubscribe {
                req_id,
                stream,
                region,
                after,
                vector,
                credit,
            },
        )
}

fn stamp() -> impl Strategy<Value = Stamp> {
    (text(), any::<[u64; 4]>()).prop_map(|(origin, n)| Stamp {
        origin,
        origin_seq: n[0],
        key_seq: n[1],
        hlc: n[2],
        local_seq: n[3],
    })
}

fn delivery() -> impl Strategy<Value = Delivery> {
    (
        (text(), text(), text(), opt_text()),
        headers(),
        payload(),
        any::<u32>(),
        stamp(),
    )
        .prop_map(
            |((stream, subject, id, key), headers, payload, delivery_count, stamp)| Delivery {
                stream,
                subject,
                id,
                key,
                headers,
                payload,
                delivery_count,
                stamp,
            },
        )
}

/// Any frame of any kind.
fn frame() -> impl Strategy<Value = Frame> {
    let req = any::<u64>;
    prop_oneof![
        (any::<u16>(), text()).prop_map(|(version, client)| Frame::Hello { version, client }),
        (any::<u16>(), text(), any::<u32>()).prop_map(|(version, node, message_bytes_max)| {
            Frame::HelloOk {
                version,
                node,
                message_bytes_max,
            }
        }),
        (req(), error_body()).prop_map(|(req_id, error)| Frame::Error { req_id, error }),
        req().prop_map(|req_id| Frame::Done { req_id }),
        (req(), ack_level(), pub_message()).prop_map(|(req_id, ack, msg)| Frame::Publish {
            req_id,
            ack,
            msg
        }),
        (req(), ack_level(), vec(pub_message(), 0..6))
            .prop_map(|(req_id, ack, msgs)| Frame::PublishBatch { req_id, ack, msgs }),
        (req(), receipt()).prop_map(|(req_id, receipt)| Frame::PubAck { req_id, receipt }),
        (
            req(),
            vec(
                prop_oneof![receipt().prop_map(Ok), error_body().prop_map(Err)],
                0..6
            )
        )
            .prop_map(|(req_id, results)| Frame::PubAckBatch { req_id, results }),
        (req(), stream_config()).prop_map(|(req_id, config)| Frame::StreamAdd { req_id, config }),
        (req(), text()).prop_map(|(req_id, name)| Frame::StreamGet { req_id, name }),
        req().prop_map(|req_id| Frame::StreamList { req_id }),
        (req(), text()).prop_map(|(req_id, name)| Frame::StreamRemove { req_id, name }),
        (req(), stream_info()).prop_map(|(req_id, info)| Frame::StreamInfo { req_id, info }),
        (req(), vec(stream_info(), 0..4))
            .prop_map(|(req_id, streams)| Frame::StreamListResp { req_id, streams }),
        subscribe().prop_map(Frame::Subscribe),
        mesh_subscribe().prop_map(Frame::MeshSubscribe),
        any::<u64>().prop_map(|req_id| Frame::MeshStatus { req_id }),
        any::<u64>().prop_map(|local_seq| Frame::MeshPassed { local_seq }),
        (any::<u64>(), text()).prop_map(|(req_id, json)| Frame::MeshStatusResp { req_id, json }),
        (req(), text()).prop_map(|(req_id, stream)| Frame::SubscribeOk { req_id, stream }),
        delivery().prop_map(Frame::Deliver),
        any::<u32>().prop_map(|credit| Frame::Credit { credit }),
        vec(any::<u64>(), 0..40).prop_map(|seqs| Frame::Ack { seqs }),
        (any::<u64>(), any::<u32>()).prop_map(|(seq, delay_ms)| Frame::Nack { seq, delay_ms }),
        plugin_frame(),
        region_frame(),
    ]
}

/// Any of the 8 plugin administration frames.
fn plugin_frame() -> impl Strategy<Value = Frame> {
    let req = any::<u64>;
    prop_oneof![
        (
            (req(), text(), opt_text(), text()),
            (headers(), opt_text(), opt_text(), payload())
        )
            .prop_map(
                |((req_id, name, hook, by), (params, stream, fallback, component))| {
                    Frame::PluginDeploy(PluginDeploy {
                        req_id,
                        name,
                        hook,
                        by,
                        params,
                        stream,
                        fallback,
                        component,
                    })
                }
            ),
        req().prop_map(|req_id| Frame::PluginList { req_id }),
        (req(), text(), text()).prop_map(|(req_id, name, by)| Frame::PluginRollback {
            req_id,
            name,
            by
        }),
        (req(), text(), text()).prop_map(|(req_id, name, by)| Frame::PluginRemove {
            req_id,
            name,
            by
        }),
        (req(), text(), text(), opt_text()).prop_map(|(req_id, stream, name, fallback)| {
            Frame::PluginAttach {
                req_id,
                stream,
                name,
                fallback,
            }
        }),
        (req(), text(), text()).prop_map(|(req_id, stream, name)| Frame::PluginDetach {
            req_id,
            stream,
            name
        }),
        (req(), text(), any::<u32>()).prop_map(|(req_id, name, version)| Frame::PluginOk {
            req_id,
            name,
            version
        }),
        (req(), text()).prop_map(|(req_id, json)| Frame::PluginListResp { req_id, json }),
    ]
}

/// Any of the 5 region administration frames.
fn region_frame() -> impl Strategy<Value = Frame> {
    let req = any::<u64>;
    prop_oneof![
        req().prop_map(|req_id| Frame::RegionStatus { req_id }),
        (req(), text()).prop_map(|(req_id, json)| Frame::RegionStatusResp { req_id, json }),
        (req(), any::<u64>(), text(), text()).prop_map(|(req_id, id, region_addr, client_addr)| {
            Frame::RegionAddNode {
                req_id,
                id,
                region_addr,
                client_addr,
            }
        }),
        (req(), any::<u64>()).prop_map(|(req_id, id)| Frame::RegionRemoveNode { req_id, id }),
        req().prop_map(|req_id| Frame::RegionOk { req_id }),
    ]
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn decode_all(bytes: &[u8]) -> Result<Option<Frame>, DecodeError> {
    Frame::decode(&mut BytesMut::from(bytes), FRAME_BYTES_MAX)
}

/// Build a frame from a kind byte and a body, with a correct length prefix.
fn raw(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(LEN_PREFIX_BYTES + 1 + body.len());
    v.extend_from_slice(&(1 + body.len() as u32).to_be_bytes());
    v.push(kind);
    v.extend_from_slice(body);
    v
}

fn str16(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

/// Decode `bytes` fed in the given chunks, checking `Ok(None)` and an untouched buffer
/// until the last chunk arrives.
fn decode_in_chunks(bytes: &[u8], cuts: &[usize]) -> Frame {
    let mut buf = BytesMut::new();
    let mut prev = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        let cut = cut.clamp(prev, bytes.len());
        buf.extend_from_slice(&bytes[prev..cut]);
        prev = cut;
        if cut < bytes.len() {
            assert_eq!(
                Frame::decode(&mut buf, FRAME_BYTES_MAX),
                Ok(None),
                "after {cut} bytes"
            );
            assert_eq!(buf.len(), cut, "an incomplete frame must stay buffered");
        }
    }
    let f = Frame::decode(&mut buf, FRAME_BYTES_MAX)
        .expect("valid frame")
        .expect("whole frame");
    assert!(buf.is_empty());
    f
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn round_trip(f in frame()) {
        let bytes = f.to_bytes();
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        prop_assert_eq!(len + LEN_PREFIX_BYTES, bytes.len());
        prop_assert_eq!(bytes[4], f.kind());
        let mut buf = BytesMut::from(&bytes[..]);
        prop_assert_eq!(Frame::decode(&mut buf, FRAME_BYTES_MAX), Ok(Some(f.clone())));
        prop_assert!(buf.is_empty());
        // Decoding the body alone gives the same frame.
        prop_assert_eq!(Frame::decode_body(bytes.slice(LEN_PREFIX_BYTES..)), Ok(f));
    }

    #[test]
    fn borrowed_delivery_decodes_as_the_delivery(d in delivery()) {
        let headers = d.header_refs();
        let r = d.borrowed(&headers);
        let mut buf = BytesMut::new();
        r.encode(&mut buf);
        prop_assert_eq!(Frame::decode(&mut buf, FRAME_BYTES_MAX), Ok(Some(Frame::Deliver(d.clone()))));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn round_trip_byte_by_byte(f in frame()) {
        let bytes = f.to_bytes();
        let cuts: Vec<usize> = (0..bytes.len()).collect();
        prop_assert_eq!(decode_in_chunks(&bytes, &cuts), f);
    }

    #[test]
    fn round_trip_split(f in frame(), at in any::<prop::sample::Index>()) {
        let bytes = f.to_bytes();
        let cut = at.index(bytes.len() + 1);
        prop_assert_eq!(decode_in_chunks(&bytes, &[cut]), f);
    }

    /// Frames written back to back (as on a stream) decode one by one, in order.
    #[test]
    fn consecutive_frames(frames in vec(frame(), 1..6), at in any::<prop::sample::Index>()) {
        let mut wire = BytesMut::new();
        for f in &frames {
            f.encode(&mut wire);
        }
        // Deliver the bytes in two pieces; the first may end inside any frame.
        let cut = at.index(wire.len() + 1);
        let mut buf = BytesMut::from(&wire[..cut]);
        let mut got = Vec::new();
        while let Some(f) = Frame::decode(&mut buf, FRAME_BYTES_MAX).unwrap() {
            got.push(f);
        }
        buf.extend_from_slice(&wire[cut..]);
        while let Some(f) = Frame::decode(&mut buf, FRAME_BYTES_MAX).unwrap() {
            got.push(f);
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, frames);
    }

    /// Cutting a frame short: `Ok(None)` while the prefix promises more bytes;
    /// `Truncated` (or `EmptyFrame` for a zero length) once the prefix is rewritten to
    /// match the cut, because no strict prefix of a body is itself a valid body.
    #[test]
    fn truncation(f in frame(), at in any::<prop::sample::Index>()) {
        let bytes = f.to_bytes();
        let cut = at.index(bytes.len());
        prop_assert_eq!(decode_all(&bytes[..cut]), Ok(None));

        let body_len = cut.saturating_sub(LEN_PREFIX_BYTES);
        let mut short = (body_len as u32).to_be_bytes().to_vec();
        short.extend_from_slice(&bytes[LEN_PREFIX_BYTES..LEN_PREFIX_BYTES + body_len]);
        match decode_all(&short) {
            Err(DecodeError::EmptyFrame) => prop_assert_eq!(body_len, 0),
            Err(DecodeError::Truncated(_)) => {}
            other => prop_assert!(false, "cut at {} of {:?}: {:?}", cut, f, other),
        }
    }

    /// Any bytes: no panic; bytes are consumed only with a frame; when nothing is decoded
    /// the buffer is unchanged; reservations stay within the frame limit; and whatever
    /// decodes re-encodes to something that decodes to the same frame.
    #[test]
    fn arbitrary_bytes(data in vec(any::<u8>(), 0..512), max in 1usize..1024) {
        let mut buf = BytesMut::from(&data[..]);
        loop {
            let before = buf.clone();
            match Frame::decode(&mut buf, max) {
                Ok(Some(f)) => {
                    prop_assert!(buf.len() < before.len());
                    let again = decode_all(&f.to_bytes()).unwrap().unwrap();
                    prop_assert_eq!(again, f);
                }
                Ok(None) => {
                    prop_assert_eq!(&buf, &before);
                    // Growth is bounded by the frame limit (or the input), with slack for
                    // the allocator's doubling.
                    prop_assert!(buf.capacity() <= 2 * (LEN_PREFIX_BYTES + max).max(data.len()));
                    break;
                }
                Err(_) => break,
            }
        }
    }

    /// Arbitrary bytes after a valid kind byte, so every decoder branch sees garbage.
    #[test]
    fn arbitrary_bodies(k in prop::sample::select(all_kinds()), body in vec(any::<u8>(), 0..128)) {
        let bytes = raw(k, &body);
        if let Ok(Some(f)) = decode_all(&bytes) {
            prop_assert_eq!(f.kind(), k);
            prop_assert_eq!(decode_all(&f.to_bytes()), Ok(Some(f)));
        }
    }

    /// Mutating one byte of a valid frame never panics.
    #[test]
    fn mutated_frames(f in frame(), at in any::<prop::sample::Index>(), b in any::<u8>()) {
        let mut bytes = f.to_bytes().to_vec();
        let i = at.index(bytes.len());
        bytes[i] = b;
        let _ = decode_all(&bytes);
    }
}

fn all_kinds() -> Vec<u8> {
    use kind::*;
    vec![
        HELLO,
        HELLO_OK,
        ERROR,
        DONE,
        PUBLISH,
        PUBLISH_BATCH,
        PUB_ACK,
        PUB_ACK_BATCH,
        STREAM_ADD,
        STREAM_GET,
        STREAM_LIST,
        STREAM_REMOVE,
        STREAM_INFO,
        STREAM_LIST_RESP,
        SUBSCRIBE,
        SUBSCRIBE_OK,
        DELIVER,
        CREDIT,
        ACK,
        NACK,
        PLUGIN_DEPLOY,
        PLUGIN_LIST,
        PLUGIN_ROLLBACK,
        PLUGIN_REMOVE,
        PLUGIN_ATTACH,
        PLUGIN_DETACH,
        PLUGIN_OK,
        PLUGIN_LIST_RESP,
        REGION_STATUS,
        REGION_STATUS_RESP,
        REGION_ADD_NODE,
        REGION_REMOVE_NODE,
        REGION_OK,
        MESH_SUBSCRIBE,
        MESH_STATUS,
        MESH_STATUS_RESP,
        MESH_PASSED,
    ]
}

// ---------------------------------------------------------------------------------------
// Framing refusals
// ---------------------------------------------------------------------------------------

#[test]
fn short_prefix_waits() {
    for n in 0..LEN_PREFIX_BYTES {
        assert_eq!(decode_all(&[0u8; 3][..n]), Ok(None));
    }
}

#[test]
fn four_gib_frame_is_refused_without_allocating() {
    let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, kind::PUBLISH][..]);
    let cap = buf.capacity();
    assert_eq!(
        Frame::decode(&mut buf, FRAME_BYTES_MAX),
        Err(DecodeError::FrameTooLarge {
            len: u32::MAX as usize,
            max: FRAME_BYTES_MAX
        })
    );
    assert_eq!(buf.capacity(), cap, "nothing reserved for a refused frame");
}

#[test]
fn frame_limit_is_inclusive() {
    // A frame of exactly the limit is accepted; one byte more is refused.
    let f = Frame::Credit { credit: 1 };
    let bytes = f.to_bytes();
    assert_eq!(
        Frame::decode(&mut BytesMut::from(&bytes[..]), 5),
        Ok(Some(f))
    );
    assert_eq!(
        Frame::decode(&mut BytesMut::from(&bytes[..]), 4),
        Err(DecodeError::FrameTooLarge { len: 5, max: 4 })
    );
}

#[test]
fn incomplete_frame_reserves_at_most_the_frame() {
    let mut buf = BytesMut::new();
    buf.put_u32(1000);
    buf.put_u8(kind::PUBLISH);
    assert_eq!(Frame::decode(&mut buf, FRAME_BYTES_MAX), Ok(None));
    assert!(buf.capacity() >= 1004);
    assert!(buf.capacity() < 4096, "capacity {}", buf.capacity());
}

#[test]
fn empty_frame() {
    assert_eq!(decode_all(&[0, 0, 0, 0]), Err(DecodeError::EmptyFrame));
}

#[test]
fn unknown_kinds() {
    let known = all_kinds();
    for k in 0..=u8::MAX {
        if known.contains(&k) {
            continue;
        }
        assert_eq!(
            decode_all(&raw(k, &[])),
            Err(DecodeError::UnknownKind(k)),
            "kind {k:#04x}"
        );
        // The kind is judged before the body.
        assert_eq!(
            decode_all(&raw(k, &[1, 2, 3])),
            Err(DecodeError::UnknownKind(k))
        );
    }
}

#[test]
fn trailing_bytes() {
    let mut bytes = Frame::Done { req_id: 1 }.to_bytes().to_vec();
    bytes.extend_from_slice(&[0xaa, 0xbb]);
    bytes[3] += 2;
    assert_eq!(decode_all(&bytes), Err(DecodeError::TrailingBytes(2)));

    // A frame without a body takes none.
    let mut body = 7u32.to_be_bytes().to_vec();
    body.push(0);
    assert_eq!(
        decode_all(&raw(kind::CREDIT, &body)),
        Err(DecodeError::TrailingBytes(1))
    );
}

#[test]
fn truncated_fields_are_named() {
    assert_eq!(
        decode_all(&raw(kind::DONE, &[0; 7])),
        Err(DecodeError::Truncated("req_id"))
    );
    assert_eq!(
        decode_all(&raw(kind::HELLO, &[0, 1, 0, 5, b'a'])),
        Err(DecodeError::Truncated("client"))
    );
    // A payload length running past the end of the frame.
    let mut d = Frame::Deliver(Delivery::default()).to_bytes().to_vec();
    let n = d.len();
    d[n - 4..].copy_from_slice(&1u32.to_be_bytes());
    assert_eq!(decode_all(&d), Err(DecodeError::Truncated("payload")));
}

// ---------------------------------------------------------------------------------------
// Field refusals
// ---------------------------------------------------------------------------------------

#[test]
fn bad_utf8() {
    let mut body = 1u16.to_be_bytes().to_vec();
    body.extend(str16(&[0xc3, 0x28]));
    assert_eq!(
        decode_all(&raw(kind::HELLO, &body)),
        Err(DecodeError::InvalidUtf8("client"))
    );

    // A lone continuation byte in a header value.
    let f = Frame::Publish {
        req_id: 1,
        ack: AckLevel::Local,
        msg: PubMessage {
            subject: "a".into(),
            headers: vec![("h".into(), "v".into())],
            ..PubMessage::default()
        },
    };
    let mut bytes = f.to_bytes().to_vec();
    let v = bytes.iter().rposition(|&b| b == b'v').unwrap();
    bytes[v] = 0x80;
    assert_eq!(
        decode_all(&bytes),
        Err(DecodeError::InvalidUtf8("header_value"))
    );
}

#[test]
fn string_length_limit() {
    // 1024 bytes are accepted, 1025 refused.
    let ok = Frame::StreamGet {
        req_id: 1,
        name: "n".repeat(NAME_BYTES_MAX),
    };
    assert_eq!(decode_all(&ok.to_bytes()), Ok(Some(ok)));

    let mut body = 1u64.to_be_bytes().to_vec();
    body.extend(str16(&vec![b'n'; NAME_BYTES_MAX + 1]));
    assert_eq!(
        decode_all(&raw(kind::STREAM_GET, &body)),
        Err(DecodeError::InvalidValue {
            field: "name",
            reason: "string longer than 1024 bytes"
        })
    );
}

fn invalid(field: &'static str) -> impl Fn(&Result<Option<Frame>, DecodeError>) -> bool {
    move |r| matches!(r, Err(DecodeError::InvalidValue { field: f, .. }) if *f == field)
}

#[test]
fn bad_bool() {
    // The presence byte of an optional string.
    let mut body = 1u64.to_be_bytes().to_vec();
    body.extend(str16(b"s.>"));
    body.push(2); // group presence: neither 0 nor 1
    assert!(invalid("group")(&decode_all(&raw(kind::SUBSCRIBE, &body))));

    // Receipt.duplicate.
    let f = Frame::PubAck {
        req_id: 1,
        receipt: Receipt {
            id: "i".into(),
            stream: "s".into(),
            seq: 1,
            duplicate: true,
            level: AckLevel::Local,
        },
    };
    let mut bytes = f.to_bytes().to_vec();
    let n = bytes.len();
    assert_eq!(bytes[n - 2], 1);
    bytes[n - 2] = 0xff;
    assert!(invalid("duplicate")(&decode_all(&bytes)));
}

#[test]
fn bad_enum_tags() {
    // ack_level
    let mut p = Frame::Publish {
        req_id: 1,
        ack: AckLevel::Local,
        msg: PubMessage::default(),
    }
    .to_bytes()
    .to_vec();
    p[LEN_PREFIX_BYTES + 1 + 8] = 3;
    assert!(invalid("ack_level")(&decode_all(&p)));

    // Receipt.level
    let mut a = Frame::PubAck {
        req_id: 1,
        receipt: Receipt {
            id: String::new(),
            stream: String::new(),
            seq: 0,
            duplicate: false,
            level: AckLevel::Local,
        },
    }
    .to_bytes()
    .to_vec();
    *a.last_mut().unwrap() = 9;
    // (The decoder reports every ack level field under the name `ack_level`.)
    assert!(invalid("ack_level")(&decode_all(&a)));

    // PubAckBatch result tag
    let mut body = 1u64.to_be_bytes().to_vec();
    body.extend(1u32.to_be_bytes());
    body.extend([2, 0, 0, 0, 0]);
    assert!(invalid("result_tag")(&decode_all(&raw(
        kind::PUB_ACK_BATCH,
        &body
    ))));

    // Subscribe start tag
    let mut s = Frame::Subscribe(Subscribe::default()).to_bytes().to_vec();
    // kind, req_id, empty subject (2), group absent (1), then the start tag.
    let tag = LEN_PREFIX_BYTES + 1 + 8 + 2 + 1;
    s[tag] = 4;
    assert!(invalid("start")(&decode_all(&s)));
}

/// A start value written for `Start`/`New` is ignored (senders write 0).
#[test]
fn start_value_ignored_for_start_and_new() {
    let mut s = Frame::Subscribe(Subscribe::default()).to_bytes().to_vec();
    let value = LEN_PREFIX_BYTES + 1 + 8 + 2 + 1 + 1;
    s[value + 7] = 5;
    assert_eq!(
        decode_all(&s),
        Ok(Some(Frame::Subscribe(Subscribe::default())))
    );
}

#[test]
fn unknown_error_code_reads_as_internal() {
    let mut body = 3u64.to_be_bytes().to_vec();
    body.extend(999u16.to_be_bytes());
    body.extend(str16(b"new"));
    assert_eq!(
        decode_all(&raw(kind::ERROR, &body)),
        Ok(Some(Frame::Error {
            req_id: 3,
            error: ErrorBody {
                code: ErrorCode::Internal,
                message: "new".into()
            }
        }))
    );
}

/// Counts one past each limit are refused as `InvalidValue { reason: "too many elements" }`
/// before anything is allocated; counts within the limit but larger than the bytes left
/// are `Truncated`.
#[test]
fn oversized_counts() {
    let too_many = |field: &'static str| move |r: &Result<Option<Frame>, DecodeError>| matches!(r, Err(DecodeError::InvalidValue { field: f, reason: "too many elements" }) if *f == field);

    // Headers (u16 count) in a Publish.
    let mut body = 1u64.to_be_bytes().to_vec();
    body.push(0); // ack_level
    body.extend(str16(b"a")); // subject
    body.extend([0, 0]); // id, key absent
    body.extend((HEADERS_MAX as u16 + 1).to_be_bytes());
    assert!(too_many("headers")(&decode_all(&raw(kind::PUBLISH, &body))));

    // Messages in a batch.
    let mut body = 1u64.to_be_bytes().to_vec();
    body.push(0);
    body.extend((BATCH_MESSAGES_MAX as u32 + 1).to_be_bytes());
    assert!(too_many("messages")(&decode_all(&raw(
        kind::PUBLISH_BATCH,
        &body
    ))));

    // Results in a batch ack.
    let mut body = 1u64.to_be_bytes().to_vec();
    body.extend(u32::MAX.to_be_bytes());
    assert!(too_many("results")(&decode_all(&raw(
        kind::PUB_ACK_BATCH,
        &body
    ))));

    // Sequences in an Ack.
    let body = (ACK_SEQS_MAX as u32 + 1).to_be_bytes();
    assert!(too_many("seqs")(&decode_all(&raw(kind::ACK, &body))));

    // Subjects of a stream.
    let mut body = 1u64.to_be_bytes().to_vec();
    body.extend(str16(b"s"));
    body.extend((STREAM_SUBJECTS_MAX as u16 + 1).to_be_bytes());
    assert!(too_many("subjects")(&decode_all(&raw(
        kind::STREAM_ADD,
        &body
    ))));

    // Streams in a list response.
    let mut body = 1u64.to_be_bytes().to_vec();
    body.extend((u16::MAX as u32 + 1).to_be_bytes());
    assert!(too_many("streams")(&decode_all(&raw(
        kind::STREAM_LIST_RESP,
        &body
    ))));

    // Within the limit but more than the frame can hold: refused before allocating.
    let body = (ACK_SEQS_MAX as u32).to_be_bytes();
    assert_eq!(
        decode_all(&raw(kind::ACK, &body)),
        Err(DecodeError::Truncated("seqs"))
    );
    let mut body = 1u64.to_be_bytes().to_vec();
    body.push(0);
    body.extend((BATCH_MESSAGES_MAX as u32).to_be_bytes());
    assert_eq!(
        decode_all(&raw(kind::PUBLISH_BATCH, &body)),
        Err(DecodeError::Truncated("messages"))
    );
}

/// Counts exactly at each limit are accepted.
#[test]
fn counts_at_the_limit() {
    let frames = [
        Frame::Publish {
            req_id: 1,
            ack: AckLevel::Local,
            msg: PubMessage {
                subject: "a".into(),
                headers: vec![(String::new(), String::new()); HEADERS_MAX],
                ..PubMessage::default()
            },
        },
        Frame::PublishBatch {
            req_id: 1,
            ack: AckLevel::Quorum,
            msgs: vec![PubMessage::default(); BATCH_MESSAGES_MAX],
        },
        Frame::Ack {
            seqs: (0..ACK_SEQS_MAX as u64).collect(),
        },
        Frame::StreamAdd {
            req_id: 1,
            config: StreamConfig {
                subjects: vec!["s".into(); STREAM_SUBJECTS_MAX],
                ..StreamConfig::default()
            },
        },
    ];
    for f in frames {
        assert_eq!(decode_all(&f.to_bytes()), Ok(Some(f)));
    }
}

/// Regression: a batch of minimal messages (10 bytes each) used to be refused as
/// `Truncated("messages")` because the decoder assumed at least 13 bytes per message.
#[test]
fn batch_of_minimal_messages() {
    for n in [1, 2, 7, 100] {
        let f = Frame::PublishBatch {
            req_id: 9,
            ack: AckLevel::Local,
            msgs: vec![PubMessage::default(); n],
        };
        let bytes = f.to_bytes();
        assert_eq!(bytes.len(), LEN_PREFIX_BYTES + 1 + 8 + 1 + 4 + 10 * n);
        assert_eq!(decode_all(&bytes), Ok(Some(f)));
    }
}

/// Payloads are sliced from the receive buffer, not copied.
#[test]
fn payload_is_not_copied() {
    let f = Frame::Deliver(Delivery {
        payload: Bytes::from(vec![7u8; 4096]),
        ..Delivery::default()
    });
    let bytes = f.to_bytes();
    let mut buf = BytesMut::from(&bytes[..]);
    let base = buf.as_ptr() as usize;
    let Some(Frame::Deliver(d)) = Frame::decode(&mut buf, FRAME_BYTES_MAX).unwrap() else {
        panic!("not a Deliver");
    };
    let p = d.payload.as_ptr() as usize;
    assert!(p >= base && p < base + bytes.len());
}
