//! Golden bytes for every frame kind of protocol version 1.
//!
//! Each test builds one frame, encodes it and compares the result with a hex literal that
//! was written out field by field from the layout in docs/protocol.md (one line per field,
//! with the field named in a comment), then decodes that literal and checks it yields the
//! same frame and consumes exactly its bytes. Together the tests prove that the encoder
//! and decoder agree with the documented byte layout for all 33 variants of `Frame`, so a
//! change to the layout cannot go unnoticed: it must change these literals and the
//! specification with them.

use bytes::{Bytes, BytesMut};
use tern_proto::{
    limits::FRAME_BYTES_MAX, AckLevel, Delivery, ErrorBody, ErrorCode, Frame, MeshSubscribe,
    PluginDeploy, PubMessage, Receipt, Stamp, StartPosition, StreamConfig, StreamInfo, StreamState,
    Subscribe,
};

/// Hex digits to bytes; whitespace is ignored.
fn unhex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert_eq!(digits.len() % 2, 0, "odd number of hex digits");
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Encode `frame`, compare with `golden`, decode `golden` back and compare with `frame`.
fn check(frame: Frame, golden: &str) {
    let want = unhex(golden);
    let got = frame.to_bytes();
    assert_eq!(hex(&got), hex(&want), "encoding of {frame:?}");

    // The length prefix counts the kind byte and the body.
    let len = u32::from_be_bytes([want[0], want[1], want[2], want[3]]) as usize;
    assert_eq!(len, want.len() - 4, "length prefix");
    assert_eq!(want[4], frame.kind(), "kind byte");

    let mut buf = BytesMut::from(&want[..]);
    let decoded = Frame::decode(&mut buf, FRAME_BYTES_MAX)
        .expect("golden bytes decode")
        .expect("golden bytes hold a whole frame");
    assert_eq!(decoded, frame);
    assert!(buf.is_empty(), "decode consumed exactly one frame");
}

#[test]
fn hello() {
    check(
        Frame::Hello {
            version: 1,
            client: "go/0.1".into(),
        },
        concat!(
            "0000000b",          // length 11
            "01",                // kind Hello
            "0001",              // version
            "0006 676f2f302e31", // client "go/0.1"
        ),
    );
}

#[test]
fn hello_ok() {
    check(
        Frame::HelloOk {
            version: 1,
            node: "n1".into(),
            message_bytes_max: 8 * 1024 * 1024,
        },
        concat!(
            "0000000b",  // length 11
            "02",        // kind HelloOk
            "0001",      // version
            "0002 6e31", // node "n1"
            "00800000",  // message_bytes_max 8 MiB
        ),
    );
}

#[test]
fn error() {
    check(
        Frame::Error {
            req_id: 7,
            error: ErrorBody {
                code: ErrorCode::StreamNotFound,
                message: "no stream".into(),
            },
        },
        concat!(
            "00000016",                // length 22
            "03",                      // kind Error
            "0000000000000007",        // req_id
            "0004",                    // code stream_not_found
            "0009 6e6f2073747265616d", // message "no stream"
        ),
    );
}

#[test]
fn done() {
    check(
        Frame::Done { req_id: 9 },
        concat!(
            "00000009",         // length 9
            "04",               // kind Done
            "0000000000000009", // req_id
        ),
    );
}

/// Also the worked example in docs/protocol.md.
#[test]
fn publish() {
    check(
        Frame::Publish {
            req_id: 1,
            ack: AckLevel::Local,
            msg: PubMessage {
                subject: "orders.eu".into(),
                id: Some("o-1".into()),
                key: Some("c42".into()),
                headers: vec![("ct".into(), "json".into())],
                payload: Bytes::from_static(b"hi"),
            },
        },
        concat!(
            "00000033",                // length 51
            "10",                      // kind Publish
            "0000000000000001",        // req_id
            "00",                      // ack_level local
            "0009 6f72646572732e6575", // subject "orders.eu"
            "01 0003 6f2d31",          // id present, "o-1"
            "01 0003 633432",          // key present, "c42"
            "0001",                    // header count
            "0002 6374",               // header name "ct"
            "0004 6a736f6e",           // header value "json"
            "00000002 6869",           // payload "hi"
        ),
    );
}

#[test]
fn publish_batch() {
    check(
        Frame::PublishBatch {
            req_id: 2,
            ack: AckLevel::Quorum,
            msgs: vec![
                PubMessage {
                    subject: "a".into(),
                    ..PubMessage::default()
                },
                PubMessage {
                    subject: "b".into(),
                    key: Some("k".into()),
                    ..PubMessage::default()
                },
            ],
        },
        concat!(
            "00000027",         // length 39
            "11",               // kind PublishBatch
            "0000000000000002", // req_id
            "01",               // ack_level quorum
            "00000002",         // message count
            // message 1
            "0001 61",  // subject "a"
            "00",       // id absent
            "00",       // key absent
            "0000",     // header count
            "00000000", // payload, empty
            // message 2
            "0001 62",    // subject "b"
            "00",         // id absent
            "01 0001 6b", // key present, "k"
            "0000",       // header count
            "00000000",   // payload, empty
        ),
    );
}

#[test]
fn pub_ack() {
    check(
        Frame::PubAck {
            req_id: 1,
            receipt: Receipt {
                id: "o-1".into(),
                stream: "orders".into(),
                seq: 42,
                duplicate: false,
                level: AckLevel::Local,
            },
        },
        concat!(
            "00000020",          // length 32
            "12",                // kind PubAck
            "0000000000000001",  // req_id
            "0003 6f2d31",       // id "o-1"
            "0006 6f7264657273", // stream "orders"
            "000000000000002a",  // seq 42
            "00",                // duplicate false
            "00",                // level local
        ),
    );
}

#[test]
fn pub_ack_batch() {
    check(
        Frame::PubAckBatch {
            req_id: 2,
            results: vec![
                Ok(Receipt {
                    id: "x".into(),
                    stream: "s".into(),
                    seq: 5,
                    duplicate: true,
                    level: AckLevel::Quorum,
                }),
                Err(ErrorBody {
                    code: ErrorCode::NoStream,
                    message: "no".into(),
                }),
            ],
        },
        concat!(
            "00000025",         // length 37
            "13",               // kind PubAckBatch
            "0000000000000002", // req_id
            "00000002",         // result count
            // result 1
            "00",               // tag ok
            "0001 78",          // id "x"
            "0001 73",          // stream "s"
            "0000000000000005", // seq
            "01",               // duplicate true
            "01",               // level quorum
            // result 2
            "01",        // tag error
            "0006",      // code no_stream
            "0002 6e6f", // message "no"
        ),
    );
}

#[test]
fn stream_add() {
    check(
        Frame::StreamAdd {
            req_id: 3,
            config: StreamConfig {
                name: "orders".into(),
                subjects: vec!["orders.>".into(), "audit.*".into()],
                max_age_ms: 86_400_000,
                max_bytes: 1 << 30,
                max_msgs: 0,
                dedup_window_ms: 120_000,
            },
        },
        concat!(
            "00000046",              // length 70
            "20",                    // kind StreamAdd
            "0000000000000003",      // req_id
            "0006 6f7264657273",     // name "orders"
            "0002",                  // subject count
            "0008 6f72646572732e3e", // "orders.>"
            "0007 61756469742e2a",   // "audit.*"
            "0000000005265c00",      // max_age_ms 86400000
            "0000000040000000",      // max_bytes 1 GiB
            "0000000000000000",      // max_msgs none
            "000000000001d4c0",      // dedup_window_ms 120000
        ),
    );
}

#[test]
fn stream_get() {
    check(
        Frame::StreamGet {
            req_id: 4,
            name: "orders".into(),
        },
        concat!(
            "00000011",          // length 17
            "21",                // kind StreamGet
            "0000000000000004",  // req_id
            "0006 6f7264657273", // name "orders"
        ),
    );
}

#[test]
fn stream_list() {
    check(
        Frame::StreamList { req_id: 5 },
        concat!(
            "00000009",         // length 9
            "22",               // kind StreamList
            "0000000000000005", // req_id
        ),
    );
}

#[test]
fn stream_remove() {
    check(
        Frame::StreamRemove {
            req_id: 6,
            name: "old".into(),
        },
        concat!(
            "0000000e",         // length 14
            "23",               // kind StreamRemove
            "0000000000000006", // req_id
            "0003 6f6c64",      // name "old"
        ),
    );
}

#[test]
fn stream_info() {
    check(
        Frame::StreamInfo {
            req_id: 4,
            info: StreamInfo {
                config: StreamConfig {
                    name: "s".into(),
                    subjects: vec!["s.>".into()],
                    ..StreamConfig::default()
                },
                state: StreamState {
                    first_seq: 1,
                    last_seq: 3,
                    msgs: 3,
                    bytes: 300,
                    last_time_ms: 1_700_000_000_000,
                },
            },
        },
        concat!(
            "0000005b",         // length 91
            "24",               // kind StreamInfo
            "0000000000000004", // req_id
            // config
            "0001 73",          // name "s"
            "0001",             // subject count
            "0003 732e3e",      // "s.>"
            "0000000000000000", // max_age_ms
            "0000000000000000", // max_bytes
            "0000000000000000", // max_msgs
            "0000000000000000", // dedup_window_ms
            // state
            "0000000000000001", // first_seq
            "0000000000000003", // last_seq
            "0000000000000003", // msgs
            "000000000000012c", // bytes 300
            "0000018bcfe56800", // last_time_ms 1700000000000
        ),
    );
}

#[test]
fn stream_list_resp() {
    check(
        Frame::StreamListResp {
            req_id: 5,
            streams: vec![StreamInfo {
                config: StreamConfig {
                    name: "e".into(),
                    ..StreamConfig::default()
                },
                state: StreamState {
                    first_seq: 1,
                    ..StreamState::default()
                },
            }],
        },
        concat!(
            "0000005a",         // length 90
            "25",               // kind StreamListResp
            "0000000000000005", // req_id
            "00000001",         // stream count
            // stream 1: config
            "0001 65",          // name "e"
            "0000",             // subject count
            "0000000000000000", // max_age_ms
            "0000000000000000", // max_bytes
            "0000000000000000", // max_msgs
            "0000000000000000", // dedup_window_ms
            // stream 1: state
            "0000000000000001", // first_seq
            "0000000000000000", // last_seq
            "0000000000000000", // msgs
            "0000000000000000", // bytes
            "0000000000000000", // last_time_ms
        ),
    );
}

#[test]
fn subscribe_group() {
    check(
        Frame::Subscribe(Subscribe {
            req_id: 8,
            subject: "orders.>".into(),
            group: Some("billing".into()),
            start: StartPosition::Seq(100),
            credit: 256,
            ack_wait_ms: 30_000,
            max_deliveries: 5,
        }),
        concat!(
            "00000032",               // length 50
            "30",                     // kind Subscribe
            "0000000000000008",       // req_id
            "0008 6f72646572732e3e",  // subject "orders.>"
            "01 0007 62696c6c696e67", // group present, "billing"
            "02",                     // start tag: seq
            "0000000000000064",       // start value 100
            "00000100",               // credit 256
            "00007530",               // ack_wait_ms 30000
            "00000005",               // max_deliveries
        ),
    );
}

/// The other start positions, and an ephemeral subscription (group absent).
#[test]
fn subscribe_ephemeral() {
    let base = Subscribe {
        req_id: 9,
        subject: "s.>".into(),
        group: None,
        start: StartPosition::Start,
        credit: 16,
        ack_wait_ms: 0,
        max_deliveries: 0,
    };
    const HEAD: &str = concat!(
        "00000024",         // length 36
        "30",               // kind Subscribe
        "0000000000000009", // req_id
        "0003 732e3e",      // subject "s.>"
        "00",               // group absent
    );
    const TAIL: &str = concat!(
        "00000010", // credit 16
        "00000000", // ack_wait_ms: node default
        "00000000", // max_deliveries: node default
    );
    for (start, tag_and_value) in [
        (StartPosition::Start, "00 0000000000000000"),
        (StartPosition::New, "01 0000000000000000"),
        (
            StartPosition::Time(1_700_000_000_000),
            "03 0000018bcfe56800",
        ),
    ] {
        check(
            Frame::Subscribe(Subscribe {
                start,
                ..base.clone()
            }),
            &format!("{HEAD}{tag_and_value}{TAIL}"),
        );
    }
}

#[test]
fn mesh_subscribe() {
    check(
        Frame::MeshSubscribe(MeshSubscribe {
            req_id: 3,
            stream: "orders".into(),
            region: "us".into(),
            after: 9,
            vector: vec![("eu".into(), 7)],
            credit: 512,
        }),
        concat!(
            "0000002f",          // length 47
            "60",                // kind MeshSubscribe
            "0000000000000003",  // req_id
            "0006 6f7264657273", // stream "orders"
            "0002 7573",         // region "us"
            "0000000000000009",  // after 9
            "0001",              // vector: one origin
            "0002 6575",         // origin "eu"
            "0000000000000007",  // its origin_seq 7
            "00000200",          // credit 512
        ),
    );
}

#[test]
fn subscribe_ok() {
    check(
        Frame::SubscribeOk {
            req_id: 8,
            stream: "orders".into(),
        },
        concat!(
            "00000011",          // length 17
            "31",                // kind SubscribeOk
            "0000000000000008",  // req_id
            "0006 6f7264657273", // stream "orders"
        ),
    );
}

#[test]
fn deliver() {
    check(
        Frame::Deliver(Delivery {
            stream: "orders".into(),
            subject: "orders.eu".into(),
            id: "o-1".into(),
            key: Some("c42".into()),
            headers: vec![("ct".into(), "json".into())],
            payload: Bytes::from_static(b"hi"),
            delivery_count: 2,
            stamp: Stamp {
                origin: "eu1".into(),
                origin_seq: 41,
                key_seq: 3,
                hlc: (1_700_000_000_000 << 16) | 5,
                local_seq: 42,
            },
        }),
        concat!(
            "0000005a",                // length 90
            "32",                      // kind Deliver
            "0006 6f7264657273",       // stream "orders"
            "0009 6f72646572732e6575", // subject "orders.eu"
            "0003 6f2d31",             // id "o-1"
            "01 0003 633432",          // key present, "c42"
            "0001",                    // header count
            "0002 6374",               // header name "ct"
            "0004 6a736f6e",           // header value "json"
            "00000002",                // delivery_count
            "0003 657531",             // origin "eu1"
            "0000000000000029",        // origin_seq 41
            "0000000000000003",        // key_seq
            "018bcfe568000005",        // hlc: ms 1700000000000 << 16 | logical 5
            "000000000000002a",        // local_seq 42
            "00000002 6869",           // payload "hi"
        ),
    );
}

#[test]
fn credit() {
    check(
        Frame::Credit { credit: 128 },
        concat!(
            "00000005", // length 5
            "33",       // kind Credit
            "00000080", // credit 128
        ),
    );
}

#[test]
fn ack() {
    check(
        Frame::Ack {
            seqs: vec![1, 2, 0x0102_0304_0506_0708],
        },
        concat!(
            "0000001d",         // length 29
            "34",               // kind Ack
            "00000003",         // seq count
            "0000000000000001", // seq
            "0000000000000002", // seq
            "0102030405060708", // seq
        ),
    );
}

#[test]
fn nack() {
    check(
        Frame::Nack {
            seq: 7,
            delay_ms: 5000,
        },
        concat!(
            "0000000d",         // length 13
            "35",               // kind Nack
            "0000000000000007", // seq
            "00001388",         // delay_ms 5000
        ),
    );
}

#[test]
fn plugin_deploy() {
    check(
        Frame::PluginDeploy(PluginDeploy {
            req_id: 1,
            name: "lanes".into(),
            hook: Some("route".into()),
            by: "ops".into(),
            params: vec![("k".into(), "v".into())],
            stream: Some("orders".into()),
            fallback: None,
            component: Bytes::from_static(b"\0asm"),
        }),
        concat!(
            "00000037",         // length 55
            "40",               // kind PluginDeploy
            "0000000000000001", // req_id
            "0005",
            "6c616e6573", // name "lanes"
            "01",
            "0005",
            "726f757465", // hook: present, "route"
            "0003",
            "6f7073", // by "ops"
            "0001",   // 1 param
            "0001",
            "6b", //   name "k"
            "0001",
            "76", //   value "v"
            "01",
            "0006",
            "6f7264657273", // stream: present, "orders"
            "00",           // fallback: absent
            "00000004",
            "0061736d", // component (bytes32)
        ),
    );
}

#[test]
fn plugin_list() {
    check(
        Frame::PluginList { req_id: 2 },
        concat!("00000009", "41", "0000000000000002"),
    );
}

#[test]
fn plugin_rollback() {
    check(
        Frame::PluginRollback {
            req_id: 3,
            name: "lanes".into(),
            by: "ops".into(),
        },
        concat!(
            "00000015",         // length 21
            "42",               // kind PluginRollback
            "0000000000000003", // req_id
            "0005",
            "6c616e6573", // name
            "0003",
            "6f7073", // by
        ),
    );
}

#[test]
fn plugin_remove() {
    check(
        Frame::PluginRemove {
            req_id: 3,
            name: "lanes".into(),
            by: "".into(),
        },
        concat!(
            "00000012",         // length 18
            "43",               // kind PluginRemove
            "0000000000000003", // req_id
            "0005",
            "6c616e6573", // name
            "0000",       // by ""
        ),
    );
}

#[test]
fn plugin_attach() {
    check(
        Frame::PluginAttach {
            req_id: 4,
            stream: "orders".into(),
            name: "lanes".into(),
            fallback: Some("skip".into()),
        },
        concat!(
            "0000001f",         // length 31
            "44",               // kind PluginAttach
            "0000000000000004", // req_id
            "0006",
            "6f7264657273", // stream
            "0005",
            "6c616e6573", // name
            "01",
            "0004",
            "736b6970", // fallback: present, "skip"
        ),
    );
}

#[test]
fn plugin_detach() {
    check(
        Frame::PluginDetach {
            req_id: 5,
            stream: "orders".into(),
            name: "lanes".into(),
        },
        concat!(
            "00000018",         // length 24
            "45",               // kind PluginDetach
            "0000000000000005", // req_id
            "0006",
            "6f7264657273", // stream
            "0005",
            "6c616e6573", // name
        ),
    );
}

#[test]
fn plugin_ok() {
    check(
        Frame::PluginOk {
            req_id: 6,
            name: "lanes".into(),
            version: 2,
        },
        concat!(
            "00000014",         // length 20
            "46",               // kind PluginOk
            "0000000000000006", // req_id
            "0005",
            "6c616e6573", // name
            "00000002",   // version
        ),
    );
}

#[test]
fn plugin_list_resp() {
    check(
        Frame::PluginListResp {
            req_id: 7,
            json: "{}".into(),
        },
        concat!(
            "0000000f",         // length 15
            "47",               // kind PluginListResp
            "0000000000000007", // req_id
            "00000002",
            "7b7d", // json (bytes32)
        ),
    );
}

#[test]
fn region_status() {
    check(
        Frame::RegionStatus { req_id: 8 },
        concat!("00000009", "50", "0000000000000008"),
    );
}

#[test]
fn region_status_resp() {
    check(
        Frame::RegionStatusResp {
            req_id: 9,
            json: "{}".into(),
        },
        concat!(
            "0000000f",         // length 15
            "51",               // kind RegionStatusResp
            "0000000000000009", // req_id
            "00000002",
            "7b7d", // json (bytes32)
        ),
    );
}

#[test]
fn mesh_passed() {
    check(
        Frame::MeshPassed { local_seq: 5 },
        concat!("00000009", "63", "0000000000000005"),
    );
}

#[test]
fn mesh_status() {
    check(
        Frame::MeshStatus { req_id: 8 },
        concat!("00000009", "61", "0000000000000008"),
    );
    check(
        Frame::MeshStatusResp {
            req_id: 9,
            json: "{}".into(),
        },
        concat!(
            "0000000f",         // length 15
            "62",               // kind MeshStatusResp
            "0000000000000009", // req_id
            "00000002",
            "7b7d", // json (bytes32)
        ),
    );
}

#[test]
fn region_add_node() {
    check(
        Frame::RegionAddNode {
            req_id: 10,
            id: 4,
            region_addr: "n4:7500".into(),
            client_addr: "n4:7420".into(),
        },
        concat!(
            "00000023",         // length 35
            "52",               // kind RegionAddNode
            "000000000000000a", // req_id
            "0000000000000004", // id
            "0007",
            "6e343a37353030", // region_addr "n4:7500"
            "0007",
            "6e343a37343230", // client_addr "n4:7420"
        ),
    );
}

#[test]
fn region_remove_node() {
    check(
        Frame::RegionRemoveNode { req_id: 11, id: 4 },
        concat!(
            "00000011",         // length 17
            "53",               // kind RegionRemoveNode
            "000000000000000b", // req_id
            "0000000000000004", // id
        ),
    );
}

#[test]
fn region_ok() {
    check(
        Frame::RegionOk { req_id: 12 },
        concat!("00000009", "54", "000000000000000c"),
    );
}

/// Every frame kind has a golden test above; this pins the kind numbers themselves.
#[test]
fn kind_numbers() {
    use tern_proto::kind::*;
    let kinds = [
        (HELLO, 0x01),
        (HELLO_OK, 0x02),
        (ERROR, 0x03),
        (DONE, 0x04),
        (PUBLISH, 0x10),
        (PUBLISH_BATCH, 0x11),
        (PUB_ACK, 0x12),
        (PUB_ACK_BATCH, 0x13),
        (STREAM_ADD, 0x20),
        (STREAM_GET, 0x21),
        (STREAM_LIST, 0x22),
        (STREAM_REMOVE, 0x23),
        (STREAM_INFO, 0x24),
        (STREAM_LIST_RESP, 0x25),
        (SUBSCRIBE, 0x30),
        (SUBSCRIBE_OK, 0x31),
        (DELIVER, 0x32),
        (CREDIT, 0x33),
        (ACK, 0x34),
        (NACK, 0x35),
        (PLUGIN_DEPLOY, 0x40),
        (PLUGIN_LIST, 0x41),
        (PLUGIN_ROLLBACK, 0x42),
        (PLUGIN_REMOVE, 0x43),
        (PLUGIN_ATTACH, 0x44),
        (PLUGIN_DETACH, 0x45),
        (PLUGIN_OK, 0x46),
        (PLUGIN_LIST_RESP, 0x47),
        (REGION_STATUS, 0x50),
        (REGION_STATUS_RESP, 0x51),
        (REGION_ADD_NODE, 0x52),
        (REGION_REMOVE_NODE, 0x53),
        (REGION_OK, 0x54),
    ];
    assert_eq!(kinds.len(), 33);
    for (got, want) in kinds {
        assert_eq!(got, want);
    }
}

/// Error code numbers are part of the wire format.
#[test]
fn error_code_numbers() {
    use ErrorCode::*;
    let codes = [
        (BadRequest, 1, "bad_request", false),
        (UnsupportedVersion, 2, "unsupported_version", false),
        (MessageTooLarge, 3, "message_too_large", false),
        (StreamNotFound, 4, "stream_not_found", false),
        (InvalidSubject, 5, "invalid_subject", false),
        (NoStream, 6, "no_stream", false),
        (StreamExists, 7, "stream_exists", false),
        (SubjectOverlap, 8, "subject_overlap", false),
        (StorageFull, 9, "storage_full", true),
        (StorageError, 10, "storage_error", true),
        (ShuttingDown, 11, "shutting_down", true),
        (LimitExceeded, 12, "limit_exceeded", true),
        (InvalidConfig, 13, "invalid_config", false),
        (GroupMismatch, 14, "group_mismatch", false),
        (Busy, 15, "busy", true),
        (Internal, 16, "internal", false),
        (Rejected, 17, "rejected", false),
        (PluginFailed, 18, "plugin_failed", true),
        (PluginNotFound, 19, "plugin_not_found", false),
        (InvalidPlugin, 20, "invalid_plugin", false),
        (NotLeader, 21, "not_leader", true),
        (Unavailable, 22, "unavailable", true),
    ];
    for (code, number, name, retryable) in codes {
        assert_eq!(code as u16, number);
        assert_eq!(ErrorCode::from_u16(number), code);
        assert_eq!(code.name(), name);
        assert_eq!(code.is_retryable(), retryable, "{name}");
    }
    // Unknown numbers (from a newer node) read as `internal`.
    assert_eq!(ErrorCode::from_u16(0), Internal);
    assert_eq!(ErrorCode::from_u16(23), Internal);
    assert_eq!(ErrorCode::from_u16(u16::MAX), Internal);
}
