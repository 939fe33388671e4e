//! The byte layout of region RPCs between nodes: what a network transport (QUIC next) puts
//! in one length-delimited message. The in-process router uses it for every message too, so
//! every simulation run exercises it.
//!
//! Integers are big-endian; variable-length fields carry a `u32` length (see codec.rs).
//!
//! ```text
//! message   = version u8 (1) | kind u8 | body
//! vote      = term u64 | node u64 | committed u8
//! log id    = term u64 | node u64 | index u64;  option<x> = 0 | 1 x
//! kind 1    AppendEntries: vote | prev option<log id> | leader_commit option<log id>
//!                          | count u64 | count x (u32 length | log entry as stored on disk)
//! kind 2    Vote:          vote | last option<log id>
//! kind 3    InstallSnapshot: vote | meta (u32 length | JSON) | offset u64
//!                          | data (u32 length | bytes) | done u8
//! kind 0x81 AppendEntries reply: 0 ok | result ; or 1 | error (u32 length | JSON)
//!           result = 0 Success | 1 PartialSuccess option<log id> | 2 Conflict
//!                    | 3 HigherVote vote
//! kind 0x82 Vote reply:    0 | vote | granted u8 | last option<log id> ; or 1 | error
//! kind 0x83 InstallSnapshot reply: 0 | vote ; or 1 | error
//! ```
//! Snapshot metadata and Raft errors travel as JSON (openraft's serde form): they are rare,
//! small, and owned by openraft.

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use crate::codec::{self, CodecError, Dec, Enc};
use crate::network::{RaftReply, RaftRpc};
use crate::NodeId;

/// Version of the region RPC layout written by this build.
pub const WIRE_VERSION: u8 = 1;

const KIND_APPEND: u8 = 1;
const KIND_VOTE: u8 = 2;
const KIND_SNAPSHOT: u8 = 3;
const KIND_REPLY: u8 = 0x80;

const APPEND_SUCCESS: u8 = 0;
const APPEND_PARTIAL: u8 = 1;
const APPEND_CONFLICT: u8 = 2;
const APPEND_HIGHER_VOTE: u8 = 3;

fn json<T: serde::Serialize>(v: &T, what: &'static str) -> Result<Vec<u8>, CodecError> {
    serde_json::to_vec(v).map_err(|_| CodecError {
        what,
        why: "does not serialize to JSON",
    })
}

fn from_json<T: serde::de::DeserializeOwned>(d: &mut Dec<'_>) -> Result<T, CodecError> {
    let b = d.bytes()?;
    serde_json::from_slice(b).map_err(|_| d.err("bad JSON"))
}

/// Encodes a request.
pub fn encode_rpc(rpc: &RaftRpc) -> Result<Vec<u8>, CodecError> {
    let mut e = Enc::default();
    e.u8(WIRE_VERSION);
    match rpc {
        RaftRpc::AppendEntries(r) => {
            e.u8(KIND_APPEND);
            e.vote(&r.vote);
            e.opt_log_id(&r.prev_log_id);
            e.opt_log_id(&r.leader_commit);
            e.u64(r.entries.len() as u64);
            for entry in &r.entries {
                codec::put_entry_field(&mut e, entry)?;
            }
        }
        RaftRpc::Vote(r) => {
            e.u8(KIND_VOTE);
            e.vote(&r.vote);
            e.opt_log_id(&r.last_log_id);
        }
        RaftRpc::InstallSnapshot(r) => {
            e.u8(KIND_SNAPSHOT);
            e.vote(&r.vote);
            e.bytes(&json(&r.meta, "snapshot metadata")?)?;
            e.u64(r.offset);
            e.bytes(&r.data)?;
            e.flag(r.done);
        }
    }
    Ok(e.0)
}

/// Decodes a request; anything malformed is a [`CodecError`], never a panic.
pub fn decode_rpc(b: &[u8]) -> Result<RaftRpc, CodecError> {
    decode_shared_rpc(&bytes::Bytes::copy_from_slice(b))
}

/// [`decode_rpc`] of a request whose entries keep their store data in `b` (no copy).
pub fn decode_shared_rpc(b: &bytes::Bytes) -> Result<RaftRpc, CodecError> {
    let mut d = Dec::shared(b, "region request");
    d.version()?;
    let rpc = match d.u8()? {
        KIND_APPEND => {
            let vote = d.vote()?;
            let prev_log_id = d.opt_log_id()?;
            let leader_commit = d.opt_log_id()?;
            let n = d.count(4)?;
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                entries.push(codec::decode_shared_entry(&d.shared_bytes()?)?);
            }
            RaftRpc::AppendEntries(AppendEntriesRequest {
                vote,
                prev_log_id,
                entries,
                leader_commit,
            })
        }
        KIND_VOTE => {
            let vote = d.vote()?;
            let last_log_id = d.opt_log_id()?;
            RaftRpc::Vote(VoteRequest { vote, last_log_id })
        }
        KIND_SNAPSHOT => {
            let vote = d.vote()?;
            let meta = from_json(&mut d)?;
            let offset = d.u64()?;
            let data = d.bytes()?.to_vec();
            let done = d.flag()?;
            RaftRpc::InstallSnapshot(InstallSnapshotRequest {
                vote,
                meta,
                offset,
                data,
                done,
            })
        }
        _ => return Err(d.err("unknown request kind")),
    };
    d.finish()?;
    Ok(rpc)
}

fn put_result<T, E: serde::Serialize>(
    e: &mut Enc,
    r: &Result<T, E>,
    ok: impl FnOnce(&mut Enc, &T),
) -> Result<(), CodecError> {
    match r {
        Ok(v) => {
            e.u8(0);
            ok(e, v);
        }
        Err(err) => {
            e.u8(1);
            e.bytes(&json(err, "raft error")?)?;
        }
    }
    Ok(())
}

/// Encodes a reply.
pub fn encode_reply(reply: &RaftReply) -> Result<Vec<u8>, CodecError> {
    let mut e = Enc::default();
    e.u8(WIRE_VERSION);
    match reply {
        RaftReply::AppendEntries(r) => {
            e.u8(KIND_REPLY | KIND_APPEND);
            put_result(&mut e, r, |e, resp| match resp {
                AppendEntriesResponse::Success => e.u8(APPEND_SUCCESS),
                AppendEntriesResponse::PartialSuccess(id) => {
                    e.u8(APPEND_PARTIAL);
                    e.opt_log_id(id);
                }
                AppendEntriesResponse::Conflict => e.u8(APPEND_CONFLICT),
                AppendEntriesResponse::HigherVote(v) => {
                    e.u8(APPEND_HIGHER_VOTE);
                    e.vote(v);
                }
            })?;
        }
        RaftReply::Vote(r) => {
            e.u8(KIND_REPLY | KIND_VOTE);
            put_result(&mut e, r, |e, resp| {
                e.vote(&resp.vote);
                e.flag(resp.vote_granted);
                e.opt_log_id(&resp.last_log_id);
            })?;
        }
        RaftReply::InstallSnapshot(r) => {
            e.u8(KIND_REPLY | KIND_SNAPSHOT);
            put_result(&mut e, r, |e, resp| e.vote(&resp.vote))?;
        }
    }
    Ok(e.0)
}

fn get_result<T, E: serde::de::DeserializeOwned>(
    d: &mut Dec<'_>,
    ok: impl FnOnce(&mut Dec<'_>) -> Result<T, CodecError>,
) -> Result<Result<T, E>, CodecError> {
    match d.u8()? {
        0 => Ok(Ok(ok(d)?)),
        1 => Ok(Err(from_json(d)?)),
        _ => Err(d.err("bad result tag")),
    }
}

/// Decodes a reply; anything malformed is a [`CodecError`], never a panic.
pub fn decode_reply(b: &[u8]) -> Result<RaftReply, CodecError> {
    let mut d = Dec::new(b, "region reply");
    d.version()?;
    let kind = d.u8()?;
    let reply = match kind {
        k if k == KIND_REPLY | KIND_APPEND => {
            let r: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> =
                get_result(&mut d, |d| match d.u8()? {
                    APPEND_SUCCESS => Ok(AppendEntriesResponse::Success),
                    APPEND_PARTIAL => Ok(AppendEntriesResponse::PartialSuccess(d.opt_log_id()?)),
                    APPEND_CONFLICT => Ok(AppendEntriesResponse::Conflict),
                    APPEND_HIGHER_VOTE => Ok(AppendEntriesResponse::HigherVote(d.vote()?)),
                    _ => Err(d.err("unknown append-entries result")),
                })?;
            RaftReply::AppendEntries(r)
        }
        k if k == KIND_REPLY | KIND_VOTE => {
            let r: Result<VoteResponse<NodeId>, RaftError<NodeId>> = get_result(&mut d, |d| {
                let vote = d.vote()?;
                let vote_granted = d.flag()?;
                let last_log_id = d.opt_log_id()?;
                Ok(VoteResponse {
                    vote,
                    vote_granted,
                    last_log_id,
                })
            })?;
            RaftReply::Vote(r)
        }
        k if k == KIND_REPLY | KIND_SNAPSHOT => {
            let r: Result<
                InstallSnapshotResponse<NodeId>,
                RaftError<NodeId, InstallSnapshotError>,
            > = get_result(&mut d, |d| Ok(InstallSnapshotResponse { vote: d.vote()? }))?;
            RaftReply::InstallSnapshot(r)
        }
        _ => return Err(d.err("unknown reply kind")),
    };
    d.finish()?;
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Command, Entry};
    use openraft::error::Fatal;
    use openraft::testing::log_id;
    use openraft::{EntryPayload, Vote};

    fn append_rpc() -> RaftRpc {
        RaftRpc::AppendEntries(AppendEntriesRequest {
            vote: Vote::new_committed(3, 1),
            prev_log_id: Some(log_id(2, 1, 9)),
            entries: vec![Entry {
                log_id: log_id(3, 1, 10),
                payload: EntryPayload::Normal(Command::Put {
                    key: "k".into(),
                    value: b"v".to_vec(),
                }),
            }],
            leader_commit: Some(log_id(2, 1, 9)),
        })
    }

    /// Pins the layout of a vote request.
    #[test]
    fn vote_request_golden_bytes() {
        let rpc = RaftRpc::Vote(VoteRequest {
            vote: Vote::new(4, 2),
            last_log_id: None,
        });
        let b = encode_rpc(&rpc).unwrap();
        let want: Vec<u8> = [
            &[WIRE_VERSION, KIND_VOTE][..],
            &4u64.to_be_bytes(),
            &2u64.to_be_bytes(),
            &[0u8], // not committed
            &[0u8], // no last log id
        ]
        .concat();
        assert_eq!(b, want);
    }

    #[test]
    fn requests_and_replies_round_trip() {
        let b = encode_rpc(&append_rpc()).unwrap();
        let back = decode_rpc(&b).unwrap();
        assert_eq!(format!("{back:?}"), format!("{:?}", append_rpc()));

        let replies = vec![
            RaftReply::AppendEntries(Ok(AppendEntriesResponse::PartialSuccess(Some(log_id(
                1, 2, 3,
            ))))),
            RaftReply::AppendEntries(Ok(AppendEntriesResponse::HigherVote(Vote::new(9, 3)))),
            RaftReply::AppendEntries(Err(RaftError::Fatal(Fatal::Stopped))),
            RaftReply::Vote(Ok(VoteResponse {
                vote: Vote::new(5, 1),
                vote_granted: true,
                last_log_id: Some(log_id(4, 1, 7)),
            })),
            RaftReply::InstallSnapshot(Ok(InstallSnapshotResponse {
                vote: Vote::new_committed(5, 1),
            })),
        ];
        for r in replies {
            let back = decode_reply(&encode_reply(&r).unwrap()).unwrap();
            assert_eq!(format!("{back:?}"), format!("{r:?}"));
        }
    }

    /// A store entry decoded from a shared request keeps its data in the request's buffer,
    /// and decodes to what a copying decode gives.
    #[test]
    fn store_entries_share_the_request_buffer() {
        let data = bytes::Bytes::from_static(b"an encoded store entry");
        let rpc = RaftRpc::AppendEntries(AppendEntriesRequest {
            vote: Vote::new_committed(3, 1),
            prev_log_id: None,
            entries: vec![Entry {
                log_id: log_id(3, 1, 10),
                payload: EntryPayload::Normal(Command::Store {
                    proposer: 1,
                    proposal: 7,
                    entry: data.clone(),
                }),
            }],
            leader_commit: None,
        });
        let wire = bytes::Bytes::from(encode_rpc(&rpc).unwrap());
        let shared = decode_shared_rpc(&wire).unwrap();
        assert_eq!(format!("{shared:?}"), format!("{rpc:?}"));
        assert_eq!(
            format!("{:?}", decode_rpc(&wire).unwrap()),
            format!("{rpc:?}")
        );
        let RaftRpc::AppendEntries(r) = shared else {
            panic!("not an append")
        };
        let EntryPayload::Normal(Command::Store { entry, .. }) = &r.entries[0].payload else {
            panic!("not a store entry")
        };
        assert_eq!(entry, &data);
        let within = wire.as_ptr_range();
        assert!(within.contains(&entry.as_ptr()), "the entry was copied");
    }

    #[test]
    fn every_truncation_and_bad_kind_is_an_error() {
        let b = encode_rpc(&append_rpc()).unwrap();
        for n in 0..b.len() {
            assert!(decode_rpc(&b[..n]).is_err(), "prefix of {n} bytes decoded");
        }
        let mut bad = b.clone();
        bad[1] = 77;
        assert!(decode_rpc(&bad).is_err());
        assert!(decode_reply(&b).is_err(), "a request decoded as a reply");
    }
}
