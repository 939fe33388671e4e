//! Frame types and their encoding. The byte layout is specified in docs/protocol.md
//! and pinned by the golden tests in tests/golden.rs.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, ErrorCode};
use crate::limits::{
    ACK_SEQS_MAX, BATCH_MESSAGES_MAX, HEADERS_MAX, MESH_ORIGINS_MAX, STREAM_SUBJECTS_MAX,
};
use crate::wire::{put_bool, put_bytes, put_opt_str, put_str, Reader};

/// Message headers, in the order the producer gave them. Names may repeat.
pub type Headers = Vec<(String, String)>;

/// Durability a publisher asks for before its ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckLevel {
    /// Committed and fsynced on the node that accepted it.
    #[default]
    Local = 0,
    /// Committed and fsynced on a majority of the region (a region of one: the node).
    Quorum = 1,
    /// In a region: fsynced in the leader's log, before the region commits it. Faster, and
    /// lost if the leader dies before a majority has it. The receipt has no position yet
    /// (`seq` 0): positions are given when the region commits. A node on its own reaches
    /// every level with its own fsync, and its receipts have positions.
    Leader = 2,
}

impl AckLevel {
    fn decode(b: u8) -> Result<AckLevel, DecodeError> {
        match b {
            0 => Ok(AckLevel::Local),
            1 => Ok(AckLevel::Quorum),
            2 => Ok(AckLevel::Leader),
            _ => Err(DecodeError::InvalidValue {
                field: "ack_level",
                reason: "must be 0 (local), 1 (quorum) or 2 (leader)",
            }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AckLevel::Local => "local",
            AckLevel::Quorum => "quorum",
            AckLevel::Leader => "leader",
        }
    }
}

/// A message as a producer sends it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PubMessage {
    pub subject: String,
    /// Idempotency id; the node assigns one when absent.
    pub id: Option<String>,
    /// Business entity the message belongs to (per-key ordering and versions).
    pub key: Option<String>,
    pub headers: Headers,
    pub payload: Bytes,
}

/// What the node reports for one stored (or deduplicated) message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub id: String,
    pub stream: String,
    pub seq: u64,
    /// True when the id was already stored within the dedup window: `seq` is the original's.
    pub duplicate: bool,
    /// The durability level actually reached.
    pub level: AckLevel,
}

/// A typed failure for one request or one message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

/// Stream definition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamConfig {
    pub name: String,
    pub subjects: Vec<String>,
    /// Messages older than this are purged; 0 means no age limit.
    pub max_age_ms: u64,
    /// Oldest messages are purged to keep the stream under this many payload bytes; 0 = none.
    pub max_bytes: u64,
    /// Oldest messages are purged to keep at most this many; 0 = none.
    pub max_msgs: u64,
    /// How long a message id is remembered for dedup; 0 means the node's default.
    pub dedup_window_ms: u64,
}

/// Stream counters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamState {
    /// Sequence of the oldest message held (last_seq + 1 when empty).
    pub first_seq: u64,
    /// Sequence of the newest message ever stored (0 when none).
    pub last_seq: u64,
    pub msgs: u64,
    pub bytes: u64,
    /// Commit time of the newest message, ms since the Unix epoch (0 when none).
    pub last_time_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamInfo {
    pub config: StreamConfig,
    pub state: StreamState,
}

/// Where a new subscription or a new consumer group starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartPosition {
    /// The oldest message held.
    #[default]
    Start,
    /// Only messages stored after the subscription.
    New,
    /// The first message with a sequence at or after this one.
    Seq(u64),
    /// The first message committed at or after this time (ms since the Unix epoch).
    Time(u64),
}

/// The replication stamp every stored message carries (see shared design).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stamp {
    pub origin: String,
    pub origin_seq: u64,
    pub key_seq: u64,
    /// Hybrid logical clock: physical ms in the high 48 bits, logical counter in the low 16.
    pub hlc: u64,
    pub local_seq: u64,
}

impl Stamp {
    /// Physical part of the HLC, ms since the Unix epoch.
    pub fn time_ms(&self) -> u64 {
        self.hlc >> 16
    }
}

/// One message pushed to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Delivery {
    pub stream: String,
    pub subject: String,
    pub id: String,
    pub key: Option<String>,
    pub headers: Headers,
    pub payload: Bytes,
    /// 1 on first delivery to a group, more on redeliveries; 1 for ephemeral subscriptions.
    pub delivery_count: u32,
    pub stamp: Stamp,
}

impl Delivery {
    /// The headers as borrowed pairs, for [`Delivery::borrowed`].
    pub fn header_refs(&self) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// The delivery with borrowed fields; `headers` from [`Delivery::header_refs`].
    pub fn borrowed<'a>(&'a self, headers: &'a [(&'a str, &'a str)]) -> DeliveryRef<'a> {
        DeliveryRef {
            stream: &self.stream,
            subject: &self.subject,
            id: &self.id,
            key: self.key.as_deref(),
            headers,
            payload: &self.payload,
            delivery_count: self.delivery_count,
            origin: &self.stamp.origin,
            origin_seq: self.stamp.origin_seq,
            key_seq: self.stamp.key_seq,
            hlc: self.stamp.hlc,
            local_seq: self.stamp.local_seq,
        }
    }
}

/// A [`Delivery`] with borrowed fields, encoded to the same bytes: a node encodes one
/// straight from a stored record instead of building an owned frame per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryRef<'a> {
    pub stream: &'a str,
    pub subject: &'a str,
    pub id: &'a str,
    pub key: Option<&'a str>,
    pub headers: &'a [(&'a str, &'a str)],
    pub payload: &'a [u8],
    pub delivery_count: u32,
    pub origin: &'a str,
    pub origin_seq: u64,
    pub key_seq: u64,
    pub hlc: u64,
    pub local_seq: u64,
}

impl DeliveryRef<'_> {
    /// Append the `Deliver` frame, length prefix included, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        framed(out, kind::DELIVER, |out| self.encode_body(out));
    }

    fn encode_body(&self, out: &mut BytesMut) {
        put_str(out, self.stream);
        put_str(out, self.subject);
        put_str(out, self.id);
        put_opt_str(out, self.key);
        put_headers(out, self.headers);
        out.put_u32(self.delivery_count);
        put_str(out, self.origin);
        out.put_u64(self.origin_seq);
        out.put_u64(self.key_seq);
        out.put_u64(self.hlc);
        out.put_u64(self.local_seq);
        put_bytes(out, self.payload);
    }
}

/// Append a frame of `kind` whose body `body` writes, with its length prefix.
fn framed(out: &mut BytesMut, kind: u8, body: impl FnOnce(&mut BytesMut)) {
    let start = out.len();
    out.put_u32(0); // length, patched below
    out.put_u8(kind);
    body(out);
    let len = (out.len() - start - LEN_PREFIX_BYTES) as u32;
    out[start..start + LEN_PREFIX_BYTES].copy_from_slice(&len.to_be_bytes());
}

/// Subscription request; `group: None` is an ephemeral subscription without acks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscribe {
    pub req_id: u64,
    /// Subject filter (wildcards allowed); selects the stream bound to it.
    pub subject: String,
    pub group: Option<String>,
    pub start: StartPosition,
    /// Messages the node may push before the client grants more.
    pub credit: u32,
    /// Redelivery after this long without an ack; 0 = node default. Groups only.
    pub ack_wait_ms: u32,
    /// Deliveries before a message goes to the dead-letter stream; 0 = node default.
    pub max_deliveries: u32,
}

/// A replication stream from another region (the mesh): the first frame of a stream a
/// node of region `region` opens to a node of another region, to copy `stream` from it.
/// Answered like `Subscribe` (`SubscribeOk`, then `Deliver` frames within the credit,
/// topped up with `Credit`), with the replication stamp of every delivery as its origin
/// gave it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MeshSubscribe {
    pub req_id: u64,
    /// Stream to copy, by name (the same name in both regions).
    pub stream: String,
    /// Region of the node asking: the destination of this hop, for residency rules.
    pub region: String,
    /// The sender's `local_seq` the receiver has already passed: delivery starts after it.
    pub after: u64,
    /// The receiver's version vector for the stream (origin, highest `origin_seq` held or
    /// passed over): the sender skips every message it covers.
    pub vector: Vec<(String, u64)>,
    /// Messages the node may push before the receiver grants more.
    pub credit: u32,
}

/// A plugin deployment: a WebAssembly component and how to run it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PluginDeploy {
    pub req_id: u64,
    /// Plugin name (`[a-z0-9_-]`, at most 64 bytes); a new version if it exists.
    pub name: String,
    /// Hook the component implements (`dedup-key`, `route`, `residency`, `resolve`); the
    /// node finds it from the component's exports when absent.
    pub hook: Option<String>,
    /// Who deploys, for the audit record.
    pub by: String,
    /// Parameters the plugin reads with `config()`.
    pub params: Vec<(String, String)>,
    /// Attach the plugin to this stream's chain for its hook (at the end).
    pub stream: Option<String>,
    /// Fallback for that attachment (`reject`, `allow`, `skip`); the hook's default if absent.
    pub fallback: Option<String>,
    /// The component's bytes.
    pub component: Bytes,
}

/// Every frame of protocol version 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Hello {
        version: u16,
        client: String,
    },
    HelloOk {
        version: u16,
        node: String,
        message_bytes_max: u32,
    },
    Error {
        req_id: u64,
        error: ErrorBody,
    },
    Done {
        req_id: u64,
    },
    Publish {
        req_id: u64,
        ack: AckLevel,
        msg: PubMessage,
    },
    PublishBatch {
        req_id: u64,
        ack: AckLevel,
        msgs: Vec<PubMessage>,
    },
    PubAck {
        req_id: u64,
        receipt: Receipt,
    },
    PubAckBatch {
        req_id: u64,
        results: Vec<Result<Receipt, ErrorBody>>,
    },
    StreamAdd {
        req_id: u64,
        config: StreamConfig,
    },
    StreamGet {
        req_id: u64,
        name: String,
    },
    StreamList {
        req_id: u64,
    },
    StreamRemove {
        req_id: u64,
        name: String,
    },
    StreamInfo {
        req_id: u64,
        info: StreamInfo,
    },
    StreamListResp {
        req_id: u64,
        streams: Vec<StreamInfo>,
    },
    Subscribe(Subscribe),
    MeshSubscribe(MeshSubscribe),
    SubscribeOk {
        req_id: u64,
        stream: String,
    },
    Deliver(Delivery),
    Credit {
        credit: u32,
    },
    Ack {
        seqs: Vec<u64>,
    },
    Nack {
        seq: u64,
        delay_ms: u32,
    },
    PluginDeploy(PluginDeploy),
    PluginList {
        req_id: u64,
    },
    PluginRollback {
        req_id: u64,
        name: String,
        by: String,
    },
    PluginRemove {
        req_id: u64,
        name: String,
        by: String,
    },
    PluginAttach {
        req_id: u64,
        stream: String,
        name: String,
        fallback: Option<String>,
    },
    PluginDetach {
        req_id: u64,
        stream: String,
        name: String,
    },
    /// Answer to a deploy or rollback: the version now active.
    PluginOk {
        req_id: u64,
        name: String,
        version: u32,
    },
    /// Answer to `PluginList`: a JSON document (schema in docs/protocol.md).
    PluginListResp {
        req_id: u64,
        json: String,
    },
    /// Asks the node how it sees its region.
    RegionStatus {
        req_id: u64,
    },
    /// Answer to `RegionStatus`: a JSON document (schema in docs/protocol.md).
    RegionStatusResp {
        req_id: u64,
        json: String,
    },
    /// Adds node `id` to the region as a voter (sent to the leader).
    RegionAddNode {
        req_id: u64,
        id: u64,
        /// Where the node's region (Raft) endpoint listens, `host:port`.
        region_addr: String,
        /// Where the node serves clients, `host:port`.
        client_addr: String,
    },
    /// Removes node `id` from the region (sent to the leader).
    RegionRemoveNode {
        req_id: u64,
        id: u64,
    },
    /// Answer to `RegionAddNode` or `RegionRemoveNode`: the membership change committed.
    RegionOk {
        req_id: u64,
    },
    /// On a replication stream, from the sender: every message up to this `local_seq` has
    /// been delivered or passed over (covered by the receiver's vector, or kept from its
    /// region by residency), so the receiver may resume after it.
    MeshPassed {
        local_seq: u64,
    },
    /// Asks the node how its mesh links stand.
    MeshStatus {
        req_id: u64,
    },
    /// Answer to `MeshStatus`: a JSON document (schema in docs/protocol.md).
    MeshStatusResp {
        req_id: u64,
        json: String,
    },
}

/// Frame kind bytes. Part of the wire format: never renumber.
pub mod kind {
    pub const HELLO: u8 = 0x01;
    pub const HELLO_OK: u8 = 0x02;
    pub const ERROR: u8 = 0x03;
    pub const DONE: u8 = 0x04;
    pub const PUBLISH: u8 = 0x10;
    pub const PUBLISH_BATCH: u8 = 0x11;
    pub const PUB_ACK: u8 = 0x12;
    pub const PUB_ACK_BATCH: u8 = 0x13;
    pub const STREAM_ADD: u8 = 0x20;
    pub const STREAM_GET: u8 = 0x21;
    pub const STREAM_LIST: u8 = 0x22;
    pub const STREAM_REMOVE: u8 = 0x23;
    pub const STREAM_INFO: u8 = 0x24;
    pub const STREAM_LIST_RESP: u8 = 0x25;
    pub const SUBSCRIBE: u8 = 0x30;
    pub const SUBSCRIBE_OK: u8 = 0x31;
    pub const DELIVER: u8 = 0x32;
    pub const CREDIT: u8 = 0x33;
    pub const ACK: u8 = 0x34;
    pub const NACK: u8 = 0x35;
    pub const PLUGIN_DEPLOY: u8 = 0x40;
    pub const PLUGIN_LIST: u8 = 0x41;
    pub const PLUGIN_ROLLBACK: u8 = 0x42;
    pub const PLUGIN_REMOVE: u8 = 0x43;
    pub const PLUGIN_ATTACH: u8 = 0x44;
    pub const PLUGIN_DETACH: u8 = 0x45;
    pub const PLUGIN_OK: u8 = 0x46;
    pub const PLUGIN_LIST_RESP: u8 = 0x47;
    pub const REGION_STATUS: u8 = 0x50;
    pub const REGION_STATUS_RESP: u8 = 0x51;
    pub const REGION_ADD_NODE: u8 = 0x52;
    pub const REGION_REMOVE_NODE: u8 = 0x53;
    pub const REGION_OK: u8 = 0x54;
    pub const MESH_SUBSCRIBE: u8 = 0x60;
    pub const MESH_STATUS: u8 = 0x61;
    pub const MESH_STATUS_RESP: u8 = 0x62;
    pub const MESH_PASSED: u8 = 0x63;
}

/// Bytes of the length prefix in front of every frame.
pub const LEN_PREFIX_BYTES: usize = 4;

impl Frame {
    pub fn kind(&self) -> u8 {
        use kind::*;
        match self {
            Frame::Hello { .. } => HELLO,
            Frame::HelloOk { .. } => HELLO_OK,
            Frame::Error { .. } => ERROR,
            Frame::Done { .. } => DONE,
            Frame::Publish { .. } => PUBLISH,
            Frame::PublishBatch { .. } => PUBLISH_BATCH,
            Frame::PubAck { .. } => PUB_ACK,
            Frame::PubAckBatch { .. } => PUB_ACK_BATCH,
            Frame::StreamAdd { .. } => STREAM_ADD,
            Frame::StreamGet { .. } => STREAM_GET,
            Frame::StreamList { .. } => STREAM_LIST,
            Frame::StreamRemove { .. } => STREAM_REMOVE,
            Frame::StreamInfo { .. } => STREAM_INFO,
            Frame::StreamListResp { .. } => STREAM_LIST_RESP,
            Frame::Subscribe(_) => SUBSCRIBE,
            Frame::MeshSubscribe(_) => MESH_SUBSCRIBE,
            Frame::SubscribeOk { .. } => SUBSCRIBE_OK,
            Frame::Deliver(_) => DELIVER,
            Frame::Credit { .. } => CREDIT,
            Frame::Ack { .. } => ACK,
            Frame::Nack { .. } => NACK,
            Frame::PluginDeploy(_) => PLUGIN_DEPLOY,
            Frame::PluginList { .. } => PLUGIN_LIST,
            Frame::PluginRollback { .. } => PLUGIN_ROLLBACK,
            Frame::PluginRemove { .. } => PLUGIN_REMOVE,
            Frame::PluginAttach { .. } => PLUGIN_ATTACH,
            Frame::PluginDetach { .. } => PLUGIN_DETACH,
            Frame::PluginOk { .. } => PLUGIN_OK,
            Frame::PluginListResp { .. } => PLUGIN_LIST_RESP,
            Frame::RegionStatus { .. } => REGION_STATUS,
            Frame::RegionStatusResp { .. } => REGION_STATUS_RESP,
            Frame::RegionAddNode { .. } => REGION_ADD_NODE,
            Frame::RegionRemoveNode { .. } => REGION_REMOVE_NODE,
            Frame::RegionOk { .. } => REGION_OK,
            Frame::MeshPassed { .. } => MESH_PASSED,
            Frame::MeshStatus { .. } => MESH_STATUS,
            Frame::MeshStatusResp { .. } => MESH_STATUS_RESP,
        }
    }

    /// Append the frame, length prefix included, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        framed(out, self.kind(), |out| self.encode_body(out));
    }

    /// The frame as a fresh buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }

    fn encode_body(&self, out: &mut BytesMut) {
        match self {
            Frame::Hello { version, client } => {
                out.put_u16(*version);
                put_str(out, client);
            }
            Frame::HelloOk {
                version,
                node,
                message_bytes_max,
            } => {
                out.put_u16(*version);
                put_str(out, node);
                out.put_u32(*message_bytes_max);
            }
            Frame::Error { req_id, error } => {
                out.put_u64(*req_id);
                put_error(out, error);
            }
            Frame::Done { req_id }
            | Frame::StreamList { req_id }
            | Frame::PluginList { req_id }
            | Frame::RegionStatus { req_id }
            | Frame::MeshStatus { req_id }
            | Frame::RegionOk { req_id } => out.put_u64(*req_id),
            Frame::MeshPassed { local_seq } => out.put_u64(*local_seq),
            Frame::Publish { req_id, ack, msg } => {
                out.put_u64(*req_id);
                out.put_u8(*ack as u8);
                put_pub_message(out, msg);
            }
            Frame::PublishBatch { req_id, ack, msgs } => {
                out.put_u64(*req_id);
                out.put_u8(*ack as u8);
                out.put_u32(msgs.len() as u32);
                for m in msgs {
                    put_pub_message(out, m);
                }
            }
            Frame::PubAck { req_id, receipt } => {
                out.put_u64(*req_id);
                put_receipt(out, receipt);
            }
            Frame::PubAckBatch { req_id, results } => {
                out.put_u64(*req_id);
                out.put_u32(results.len() as u32);
                for r in results {
                    match r {
                        Ok(receipt) => {
                            out.put_u8(0);
                            put_receipt(out, receipt);
                        }
                        Err(e) => {
                            out.put_u8(1);
                            put_error(out, e);
                        }
                    }
                }
            }
            Frame::StreamAdd { req_id, config } => {
                out.put_u64(*req_id);
                put_stream_config(out, config);
            }
            Frame::StreamGet { req_id, name } | Frame::StreamRemove { req_id, name } => {
                out.put_u64(*req_id);
                put_str(out, name);
            }
            Frame::StreamInfo { req_id, info } => {
                out.put_u64(*req_id);
                put_stream_info(out, info);
            }
            Frame::StreamListResp { req_id, streams } => {
                out.put_u64(*req_id);
                out.put_u32(streams.len() as u32);
                for s in streams {
                    put_stream_info(out, s);
                }
            }
            Frame::Subscribe(s) => {
                out.put_u64(s.req_id);
                put_str(out, &s.subject);
                put_opt_str(out, s.group.as_deref());
                let (tag, value) = match s.start {
                    StartPosition::Start => (0u8, 0u64),
                    StartPosition::New => (1, 0),
                    StartPosition::Seq(v) => (2, v),
                    StartPosition::Time(v) => (3, v),
                };
                out.put_u8(tag);
                out.put_u64(value);
                out.put_u32(s.credit);
                out.put_u32(s.ack_wait_ms);
                out.put_u32(s.max_deliveries);
            }
            Frame::MeshSubscribe(m) => {
                out.put_u64(m.req_id);
                put_str(out, &m.stream);
                put_str(out, &m.region);
                out.put_u64(m.after);
                out.put_u16(m.vector.len().min(MESH_ORIGINS_MAX) as u16);
                for (origin, seq) in m.vector.iter().take(MESH_ORIGINS_MAX) {
                    put_str(out, origin);
                    out.put_u64(*seq);
                }
                out.put_u32(m.credit);
            }
            Frame::SubscribeOk { req_id, stream } => {
                out.put_u64(*req_id);
                put_str(out, stream);
            }
            Frame::Deliver(d) => d.borrowed(&d.header_refs()).encode_body(out),
            Frame::Credit { credit } => out.put_u32(*credit),
            Frame::Ack { seqs } => {
                out.put_u32(seqs.len() as u32);
                for s in seqs {
                    out.put_u64(*s);
                }
            }
            Frame::Nack { seq, delay_ms } => {
                out.put_u64(*seq);
                out.put_u32(*delay_ms);
            }
            Frame::PluginDeploy(d) => {
                out.put_u64(d.req_id);
                put_str(out, &d.name);
                put_opt_str(out, d.hook.as_deref());
                put_str(out, &d.by);
                put_headers(out, &d.params);
                put_opt_str(out, d.stream.as_deref());
                put_opt_str(out, d.fallback.as_deref());
                put_bytes(out, &d.component);
            }
            Frame::PluginRollback { req_id, name, by }
            | Frame::PluginRemove { req_id, name, by } => {
                out.put_u64(*req_id);
                put_str(out, name);
                put_str(out, by);
            }
            Frame::PluginAttach {
                req_id,
                stream,
                name,
                fallback,
            } => {
                out.put_u64(*req_id);
                put_str(out, stream);
                put_str(out, name);
                put_opt_str(out, fallback.as_deref());
            }
            Frame::PluginDetach {
                req_id,
                stream,
                name,
            } => {
                out.put_u64(*req_id);
                put_str(out, stream);
                put_str(out, name);
            }
            Frame::PluginOk {
                req_id,
                name,
                version,
            } => {
                out.put_u64(*req_id);
                put_str(out, name);
                out.put_u32(*version);
            }
            Frame::PluginListResp { req_id, json }
            | Frame::RegionStatusResp { req_id, json }
            | Frame::MeshStatusResp { req_id, json } => {
                out.put_u64(*req_id);
                put_bytes(out, json.as_bytes());
            }
            Frame::RegionAddNode {
                req_id,
                id,
                region_addr,
                client_addr,
            } => {
                out.put_u64(*req_id);
                out.put_u64(*id);
                put_str(out, region_addr);
                put_str(out, client_addr);
            }
            Frame::RegionRemoveNode { req_id, id } => {
                out.put_u64(*req_id);
                out.put_u64(*id);
            }
        }
    }

    /// Decode one frame from the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not yet hold a whole frame (read more and call
    /// again); on success the frame's bytes are removed from `buf`. Payloads share `buf`'s
    /// memory instead of being copied.
    pub fn decode(
        buf: &mut BytesMut,
        frame_bytes_max: usize,
    ) -> Result<Option<Frame>, DecodeError> {
        if buf.len() < LEN_PREFIX_BYTES {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len == 0 {
            return Err(DecodeError::EmptyFrame);
        }
        if len > frame_bytes_max {
            return Err(DecodeError::FrameTooLarge {
                len,
                max: frame_bytes_max,
            });
        }
        if buf.len() < LEN_PREFIX_BYTES + len {
            // Reserve what the rest of the frame needs (bounded by frame_bytes_max above).
            buf.reserve(LEN_PREFIX_BYTES + len - buf.len());
            return Ok(None);
        }
        buf.advance(LEN_PREFIX_BYTES);
        let body = buf.split_to(len).freeze();
        Frame::decode_body(body).map(Some)
    }

    /// Decode a frame body: the kind byte and what follows, without the length prefix.
    pub fn decode_body(body: Bytes) -> Result<Frame, DecodeError> {
        use kind::*;
        let mut r = Reader::new(body);
        let kind = r.u8("kind")?;
        let frame = match kind {
            HELLO => Frame::Hello {
                version: r.u16("version")?,
                client: r.str("client")?,
            },
            HELLO_OK => Frame::HelloOk {
                version: r.u16("version")?,
                node: r.str("node")?,
                message_bytes_max: r.u32("message_bytes_max")?,
            },
            ERROR => Frame::Error {
                req_id: r.u64("req_id")?,
                error: read_error(&mut r)?,
            },
            DONE => Frame::Done {
                req_id: r.u64("req_id")?,
            },
            PUBLISH => Frame::Publish {
                req_id: r.u64("req_id")?,
                ack: AckLevel::decode(r.u8("ack_level")?)?,
                msg: read_pub_message(&mut r)?,
            },
            PUBLISH_BATCH => {
                let req_id = r.u64("req_id")?;
                let ack = AckLevel::decode(r.u8("ack_level")?)?;
                // Smallest message: empty subject (2), id and key absent (1 + 1),
                // no headers (2), empty payload (4).
                let n = r.count(true, BATCH_MESSAGES_MAX, 10, "messages")?;
                let mut msgs = Vec::with_capacity(n);
                for _ in 0..n {
                    msgs.push(read_pub_message(&mut r)?);
                }
                Frame::PublishBatch { req_id, ack, msgs }
            }
            PUB_ACK => Frame::PubAck {
                req_id: r.u64("req_id")?,
                receipt: read_receipt(&mut r)?,
            },
            PUB_ACK_BATCH => {
                let req_id = r.u64("req_id")?;
                let n = r.count(true, BATCH_MESSAGES_MAX, 5, "results")?;
                let mut results = Vec::with_capacity(n);
                for _ in 0..n {
                    results.push(match r.u8("result_tag")? {
                        0 => Ok(read_receipt(&mut r)?),
                        1 => Err(read_error(&mut r)?),
                        _ => {
                            return Err(DecodeError::InvalidValue {
                                field: "result_tag",
                                reason: "must be 0 (ok) or 1 (error)",
                            })
                        }
                    });
                }
                Frame::PubAckBatch { req_id, results }
            }
            STREAM_ADD => Frame::StreamAdd {
                req_id: r.u64("req_id")?,
                config: read_stream_config(&mut r)?,
            },
            STREAM_GET => Frame::StreamGet {
                req_id: r.u64("req_id")?,
                name: r.str("name")?,
            },
            STREAM_LIST => Frame::StreamList {
                req_id: r.u64("req_id")?,
            },
            STREAM_REMOVE => Frame::StreamRemove {
                req_id: r.u64("req_id")?,
                name: r.str("name")?,
            },
            STREAM_INFO => Frame::StreamInfo {
                req_id: r.u64("req_id")?,
                info: read_stream_info(&mut r)?,
            },
            STREAM_LIST_RESP => {
                let req_id = r.u64("req_id")?;
                let n = r.count(true, u16::MAX as usize, 42, "streams")?;
                let mut streams = Vec::with_capacity(n);
                for _ in 0..n {
                    streams.push(read_stream_info(&mut r)?);
                }
                Frame::StreamListResp { req_id, streams }
            }
            SUBSCRIBE => {
                let req_id = r.u64("req_id")?;
                let subject = r.str("subject")?;
                let group = r.opt_str("group")?;
                let tag = r.u8("start")?;
                let value = r.u64("start_value")?;
                let start = match tag {
                    0 => StartPosition::Start,
                    1 => StartPosition::New,
                    2 => StartPosition::Seq(value),
                    3 => StartPosition::Time(value),
                    _ => {
                        return Err(DecodeError::InvalidValue {
                            field: "start",
                            reason: "must be 0..=3",
                        })
                    }
                };
                Frame::Subscribe(Subscribe {
                    req_id,
                    subject,
                    group,
                    start,
                    credit: r.u32("credit")?,
                    ack_wait_ms: r.u32("ack_wait_ms")?,
                    max_deliveries: r.u32("max_deliveries")?,
                })
            }
            MESH_SUBSCRIBE => {
                let req_id = r.u64("req_id")?;
                let stream = r.str("stream")?;
                let region = r.str("region")?;
                let after = r.u64("after")?;
                let n = r.count(false, MESH_ORIGINS_MAX, 10, "vector")?;
                let mut vector = Vec::with_capacity(n);
                for _ in 0..n {
                    vector.push((r.str("origin")?, r.u64("origin_seq")?));
                }
                Frame::MeshSubscribe(MeshSubscribe {
                    req_id,
                    stream,
                    region,
                    after,
                    vector,
                    credit: r.u32("credit")?,
                })
            }
            SUBSCRIBE_OK => Frame::SubscribeOk {
                req_id: r.u64("req_id")?,
                stream: r.str("stream")?,
            },
            DELIVER => {
                let stream = r.str("stream")?;
                let subject = r.str("subject")?;
                let id = r.str("id")?;
                let key = r.opt_str("key")?;
                let headers = read_headers(&mut r)?;
                let delivery_count = r.u32("delivery_count")?;
                let stamp = Stamp {
                    origin: r.str("origin")?,
                    origin_seq: r.u64("origin_seq")?,
                    key_seq: r.u64("key_seq")?,
                    hlc: r.u64("hlc")?,
                    local_seq: r.u64("local_seq")?,
                };
                let payload = r.bytes("payload")?;
                Frame::Deliver(Delivery {
                    stream,
                    subject,
                    id,
                    key,
                    headers,
                    payload,
                    delivery_count,
                    stamp,
                })
            }
            CREDIT => Frame::Credit {
                credit: r.u32("credit")?,
            },
            ACK => {
                let n = r.count(true, ACK_SEQS_MAX, 8, "seqs")?;
                let mut seqs = Vec::with_capacity(n);
                for _ in 0..n {
                    seqs.push(r.u64("seq")?);
                }
                Frame::Ack { seqs }
            }
            NACK => Frame::Nack {
                seq: r.u64("seq")?,
                delay_ms: r.u32("delay_ms")?,
            },
            PLUGIN_DEPLOY => Frame::PluginDeploy(PluginDeploy {
                req_id: r.u64("req_id")?,
                name: r.str("name")?,
                hook: r.opt_str("hook")?,
                by: r.str("by")?,
                params: read_headers(&mut r)?,
                stream: r.opt_str("stream")?,
                fallback: r.opt_str("fallback")?,
                component: r.bytes("component")?,
            }),
            PLUGIN_LIST => Frame::PluginList {
                req_id: r.u64("req_id")?,
            },
            PLUGIN_ROLLBACK => Frame::PluginRollback {
                req_id: r.u64("req_id")?,
                name: r.str("name")?,
                by: r.str("by")?,
            },
            PLUGIN_REMOVE => Frame::PluginRemove {
                req_id: r.u64("req_id")?,
                name: r.str("name")?,
                by: r.str("by")?,
            },
            PLUGIN_ATTACH => Frame::PluginAttach {
                req_id: r.u64("req_id")?,
                stream: r.str("stream")?,
                name: r.str("name")?,
                fallback: r.opt_str("fallback")?,
            },
            PLUGIN_DETACH => Frame::PluginDetach {
                req_id: r.u64("req_id")?,
                stream: r.str("stream")?,
                name: r.str("name")?,
            },
            PLUGIN_OK => Frame::PluginOk {
                req_id: r.u64("req_id")?,
                name: r.str("name")?,
                version: r.u32("version")?,
            },
            PLUGIN_LIST_RESP => Frame::PluginListResp {
                req_id: r.u64("req_id")?,
                json: read_json(&mut r)?,
            },
            REGION_STATUS => Frame::RegionStatus {
                req_id: r.u64("req_id")?,
            },
            REGION_STATUS_RESP => Frame::RegionStatusResp {
                req_id: r.u64("req_id")?,
                json: read_json(&mut r)?,
            },
            MESH_PASSED => Frame::MeshPassed {
                local_seq: r.u64("local_seq")?,
            },
            MESH_STATUS => Frame::MeshStatus {
                req_id: r.u64("req_id")?,
            },
            MESH_STATUS_RESP => Frame::MeshStatusResp {
                req_id: r.u64("req_id")?,
                json: read_json(&mut r)?,
            },
            REGION_ADD_NODE => Frame::RegionAddNode {
                req_id: r.u64("req_id")?,
                id: r.u64("id")?,
                region_addr: r.str("region_addr")?,
                client_addr: r.str("client_addr")?,
            },
            REGION_REMOVE_NODE => Frame::RegionRemoveNode {
                req_id: r.u64("req_id")?,
                id: r.u64("id")?,
            },
            REGION_OK => Frame::RegionOk {
                req_id: r.u64("req_id")?,
            },
            other => return Err(DecodeError::UnknownKind(other)),
        };
        r.finish()?;
        Ok(frame)
    }
}

/// A `bytes32` field holding a UTF-8 JSON document.
fn read_json(r: &mut Reader) -> Result<String, DecodeError> {
    let json = r.bytes("json")?;
    String::from_utf8(json.to_vec()).map_err(|_| DecodeError::InvalidUtf8("json"))
}

fn put_error(out: &mut BytesMut, e: &ErrorBody) {
    out.put_u16(e.code as u16);
    put_str(out, &e.message);
}

fn read_error(r: &mut Reader) -> Result<ErrorBody, DecodeError> {
    Ok(ErrorBody {
        code: ErrorCode::from_u16(r.u16("code")?),
        message: r.str("message")?,
    })
}

fn put_headers<K: AsRef<str>, V: AsRef<str>>(out: &mut BytesMut, headers: &[(K, V)]) {
    out.put_u16(headers.len().min(HEADERS_MAX) as u16);
    for (k, v) in headers.iter().take(HEADERS_MAX) {
        put_str(out, k.as_ref());
        put_str(out, v.as_ref());
    }
}

fn read_headers(r: &mut Reader) -> Result<Headers, DecodeError> {
    let n = r.count(false, HEADERS_MAX, 4, "headers")?;
    let mut h = Vec::with_capacity(n);
    for _ in 0..n {
        h.push((r.str("header_name")?, r.str("header_value")?));
    }
    Ok(h)
}

fn put_pub_message(out: &mut BytesMut, m: &PubMessage) {
    put_str(out, &m.subject);
    put_opt_str(out, m.id.as_deref());
    put_opt_str(out, m.key.as_deref());
    put_headers(out, &m.headers);
    put_bytes(out, &m.payload);
}

fn read_pub_message(r: &mut Reader) -> Result<PubMessage, DecodeError> {
    Ok(PubMessage {
        subject: r.str("subject")?,
        id: r.opt_str("id")?,
        key: r.opt_str("key")?,
        headers: read_headers(r)?,
        payload: r.bytes("payload")?,
    })
}

fn put_receipt(out: &mut BytesMut, a: &Receipt) {
    put_str(out, &a.id);
    put_str(out, &a.stream);
    out.put_u64(a.seq);
    put_bool(out, a.duplicate);
    out.put_u8(a.level as u8);
}

fn read_receipt(r: &mut Reader) -> Result<Receipt, DecodeError> {
    Ok(Receipt {
        id: r.str("id")?,
        stream: r.str("stream")?,
        seq: r.u64("seq")?,
        duplicate: r.bool("duplicate")?,
        level: AckLevel::decode(r.u8("level")?)?,
    })
}

fn put_stream_config(out: &mut BytesMut, c: &StreamConfig) {
    put_str(out, &c.name);
    out.put_u16(c.subjects.len().min(STREAM_SUBJECTS_MAX) as u16);
    for s in c.subjects.iter().take(STREAM_SUBJECTS_MAX) {
        put_str(out, s);
    }
    out.put_u64(c.max_age_ms);
    out.put_u64(c.max_bytes);
    out.put_u64(c.max_msgs);
    out.put_u64(c.dedup_window_ms);
}

fn read_stream_config(r: &mut Reader) -> Result<StreamConfig, DecodeError> {
    let name = r.str("name")?;
    let n = r.count(false, STREAM_SUBJECTS_MAX, 2, "subjects")?;
    let mut subjects = Vec::with_capacity(n);
    for _ in 0..n {
        subjects.push(r.str("subject")?);
    }
    Ok(StreamConfig {
        name,
        subjects,
        max_age_ms: r.u64("max_age_ms")?,
        max_bytes: r.u64("max_bytes")?,
        max_msgs: r.u64("max_msgs")?,
        dedup_window_ms: r.u64("dedup_window_ms")?,
    })
}

fn put_stream_info(out: &mut BytesMut, i: &StreamInfo) {
    put_stream_config(out, &i.config);
    out.put_u64(i.state.first_seq);
    out.put_u64(i.state.last_seq);
    out.put_u64(i.state.msgs);
    out.put_u64(i.state.bytes);
    out.put_u64(i.state.last_time_ms);
}

fn read_stream_info(r: &mut Reader) -> Result<StreamInfo, DecodeError> {
    Ok(StreamInfo {
        config: read_stream_config(r)?,
        state: StreamState {
            first_seq: r.u64("first_seq")?,
            last_seq: r.u64("last_seq")?,
            msgs: r.u64("msgs")?,
            bytes: r.u64("bytes")?,
            last_time_ms: r.u64("last_time_ms")?,
        },
    })
}
