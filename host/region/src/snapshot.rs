//! The snapshot blob of [`crate::StateMachine`] (the key-value state machine the seeded
//! simulation and the region tests run): the whole state machine in one byte string.
//!
//! Layout (integers big-endian): `version u8 | last applied option<log id> | membership
//! (u32 length + JSON) | stream count u64 | per stream: name, tip u64, message count u64,
//! per message: position u64, record | key count u64 | per key: key, value`.
//!
//! The blob is built, sent and installed whole in memory ([`crate::SnapshotData::Memory`]),
//! which suits that small state. A node's store is snapshotted to a file instead
//! (node_snapshot.rs, [`crate::SnapshotData::File`]).

use std::io::Cursor;

use openraft::{LogId, StoredMembership};
use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, WriteTransaction};

use crate::codec::{self, Dec, Enc};
use crate::error::RegionStoreError;
use crate::tables::*;
use crate::{NodeAddr, NodeId, Snapshot, SnapshotData, SnapshotMeta};

/// What a state machine read transaction holds, encoded.
pub(crate) struct Built {
    pub(crate) last_applied: Option<LogId<NodeId>>,
    pub(crate) membership: StoredMembership<NodeId, NodeAddr>,
    pub(crate) blob: Vec<u8>,
}

/// The last applied log id and membership, as openraft's `applied_state` returns them.
pub(crate) type AppliedState = (Option<LogId<NodeId>>, StoredMembership<NodeId, NodeAddr>);

pub(crate) fn applied_state(txn: &ReadTransaction) -> Result<AppliedState, RegionStoreError> {
    let meta = txn.open_table(SM_META)?;
    let last_applied = match meta.get(SM_APPLIED)? {
        Some(v) => codec::decode_opt_log_id(v.value(), "last applied log id")?,
        None => None,
    };
    let membership = match meta.get(SM_MEMBERSHIP)? {
        Some(v) => codec::decode_stored_membership(v.value())?,
        None => StoredMembership::default(),
    };
    Ok((last_applied, membership))
}

/// Encodes the whole state machine as one blob, from one consistent read transaction.
pub(crate) fn build(txn: &ReadTransaction) -> Result<Built, RegionStoreError> {
    let (last_applied, membership) = applied_state(txn)?;
    let mut e = Enc::default();
    e.u8(codec::RECORD_VERSION);
    e.opt_log_id(&last_applied);
    codec::put_membership(&mut e, &membership)?;

    let tips = txn.open_table(STREAM_TIPS)?;
    let msgs = txn.open_table(MSGS)?;
    e.u64(tips.len()?);
    for row in tips.iter()? {
        let (name, tip) = row?;
        let name = name.value();
        e.str(name)?;
        e.u64(tip.value());
        let mut body = Enc::default();
        let mut count = 0u64;
        for m in msgs.range((name, 0)..=(name, u64::MAX))? {
            let (k, v) = m?;
            body.u64(k.value().1);
            body.bytes(v.value())?;
            count += 1;
        }
        e.u64(count);
        e.0.extend_from_slice(&body.0);
    }

    let kv = txn.open_table(KV)?;
    e.u64(kv.len()?);
    for row in kv.iter()? {
        let (k, v) = row?;
        e.str(k.value())?;
        e.bytes(v.value())?;
    }
    Ok(Built {
        last_applied,
        membership,
        blob: e.0,
    })
}

/// Replaces every state machine table with the blob's content inside `txn`. On an error the
/// caller drops `txn`, which aborts it: the old state stays whole.
pub(crate) fn install(
    txn: &WriteTransaction,
    meta: &SnapshotMeta,
    blob: &[u8],
) -> Result<(), RegionStoreError> {
    let mut d = Dec::new(blob, "snapshot");
    d.version()?;
    let last_applied = d.opt_log_id()?;
    if last_applied != meta.last_log_id {
        return Err(RegionStoreError::SnapshotMismatch {
            blob: format!("{last_applied:?}"),
            meta: format!("{:?}", meta.last_log_id),
        });
    }
    // The metadata's membership is the one openraft acts on; the blob's copy is checked
    // for shape only.
    let _ = codec::get_membership(&mut d)?;

    let mut tips = txn.open_table(STREAM_TIPS)?;
    let mut msgs = txn.open_table(MSGS)?;
    let mut kv = txn.open_table(KV)?;
    let mut sm = txn.open_table(SM_META)?;
    tips.retain(|_, _| false)?;
    msgs.retain(|_, _| false)?;
    kv.retain(|_, _| false)?;

    let streams = d.count(8 + 4 + 8)?;
    for _ in 0..streams {
        let name = d.string()?;
        let tip = d.u64()?;
        tips.insert(name.as_str(), tip)?;
        let n = d.count(8 + 4)?;
        for _ in 0..n {
            let seq = d.u64()?;
            if seq > tip {
                return Err(d.err("message past its stream's tip").into());
            }
            msgs.insert((name.as_str(), seq), d.bytes()?)?;
        }
    }
    let keys = d.count(4 + 4)?;
    for _ in 0..keys {
        let k = d.string()?;
        kv.insert(k.as_str(), d.bytes()?)?;
    }
    d.finish()?;

    sm.insert(
        SM_APPLIED,
        codec::encode_opt_log_id(&meta.last_log_id).as_slice(),
    )?;
    sm.insert(
        SM_MEMBERSHIP,
        codec::encode_stored_membership(&meta.last_membership)?.as_slice(),
    )?;
    Ok(())
}

/// Stores `blob` as the node's current snapshot (what a lagging follower is sent).
pub(crate) fn store_current(
    txn: &WriteTransaction,
    meta: &SnapshotMeta,
    blob: &[u8],
) -> Result<(), RegionStoreError> {
    let mut t = txn.open_table(SNAPSHOT)?;
    let mut m = Enc::default();
    m.u8(codec::RECORD_VERSION);
    let json = serde_json::to_vec(meta).map_err(|_| codec::CodecError {
        what: "snapshot metadata",
        why: "does not serialize to JSON",
    })?;
    m.bytes(&json)?;
    t.insert(SNAP_META, m.0.as_slice())?;
    t.insert(SNAP_DATA, blob)?;
    Ok(())
}

/// The next snapshot sequence number (part of the snapshot id, unique per node).
pub(crate) fn next_seq(txn: &WriteTransaction) -> Result<u64, RegionStoreError> {
    let mut t = txn.open_table(SNAPSHOT)?;
    let seq = match t.get(SNAP_SEQ)? {
        Some(v) => {
            let mut d = Dec::new(v.value(), "snapshot sequence");
            let s = d.u64()?;
            d.finish()?;
            s
        }
        None => 0,
    } + 1;
    t.insert(SNAP_SEQ, seq.to_be_bytes().as_slice())?;
    Ok(seq)
}

pub(crate) fn current(txn: &ReadTransaction) -> Result<Option<Snapshot>, RegionStoreError> {
    let t = txn.open_table(SNAPSHOT)?;
    let (Some(m), Some(data)) = (t.get(SNAP_META)?, t.get(SNAP_DATA)?) else {
        return Ok(None);
    };
    let mut d = Dec::new(m.value(), "snapshot metadata");
    d.version()?;
    let json = d.bytes()?;
    let meta: SnapshotMeta =
        serde_json::from_slice(json).map_err(|_| d.err("bad snapshot metadata JSON"))?;
    d.finish()?;
    Ok(Some(Snapshot {
        meta,
        snapshot: Box::new(SnapshotData::Memory(Cursor::new(data.value().to_vec()))),
    }))
}
