//! Snapshots of a node's store: what lets the log be purged, and what a member that
//! needs purged entries (a new one, a wiped one, one that was away too long) is sent.
//!
//! The store is the snapshot. Everything applied is in `tern.redb`, and a snapshot is
//! taken right after a durable commit of it, so the log behind that point is never needed
//! to repair the store after a crash. Taking one ([`Snapshots::build`], asked for once the
//! log applied since the last holds `snapshot_log_bytes`, checked every second by the node)
//! is that durable commit and a read transaction: no copy of the data. openraft then drops
//! the log behind it, keeping `logs_kept_after_snapshot` entries.
//!
//! Only a transfer writes the store out ([`PendingSnapshot::write_file`], called by the
//! network on the task that sends it): into an unlinked file in `<data>/region-snapshots/`,
//! so nothing is left behind, from the read transaction taken when openraft asked for the
//! snapshot ([`Snapshots::current`]). Before, every snapshot was written to a file as it was
//! taken: the whole store copied about as often as the log wrote its size, on every member,
//! to be sent almost never (docs/benchmarks.md).
//!
//! File layout: `magic "TERNRSNP" | meta length u32 (LE) | meta (openraft's snapshot
//! metadata, JSON) | the store's snapshot` (tern-store's snapshot.rs: every table, with a
//! row count and crc32). A receiver writes it to `receiving.part`, fsyncs it, checks it
//! whole, installs it into its store in one transaction, and removes it.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::StoredMembership;
use tern_store::{Store, StoreSnapshot};

use crate::codec;
use crate::error::RegionStoreError;
use crate::{Snapshot, SnapshotData, SnapshotMeta};

const MAGIC: &[u8; 8] = b"TERNRSNP";
const RECEIVING: &str = "receiving.part";
/// Largest metadata accepted (a membership of a few nodes is far smaller).
const META_BYTES_MAX: u32 = 1024 * 1024;

/// State-table keys of how far the log is applied, written with each apply.
pub(crate) const APPLIED_KEY: &str = "region/applied";
pub(crate) const MEMBERSHIP_KEY: &str = "region/membership";

fn io(e: std::io::Error) -> RegionStoreError {
    RegionStoreError::from(redb::Error::Io(e))
}

fn corrupt(why: &'static str) -> RegionStoreError {
    RegionStoreError::Corrupt(crate::CodecError {
        what: "snapshot file",
        why,
    })
}

/// A node's snapshots. Cheap to clone: the builder and the state machine share one.
#[derive(Clone)]
pub(crate) struct Snapshots {
    /// Where transfers are written and received.
    dir: PathBuf,
    store: Store,
    /// Bytes of log entries applied since the last snapshot was taken or installed.
    applied_since: Arc<AtomicU64>,
}

impl Snapshots {
    /// Opens the snapshot directory, dropping what a crash left: a transfer in progress,
    /// and the snapshot files of earlier versions, which wrote every snapshot out.
    pub(crate) fn open(dir: PathBuf, store: Store) -> Result<Snapshots, RegionStoreError> {
        std::fs::create_dir_all(&dir).map_err(io)?;
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().is_some_and(|e| e == "part" || e == "snap") {
                std::fs::remove_file(&path).map_err(io)?;
            }
        }
        Ok(Snapshots {
            dir,
            store,
            applied_since: Arc::default(),
        })
    }

    /// Counts log bytes applied to the store.
    pub(crate) fn note_applied(&self, bytes: u64) {
        self.applied_since.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Whether at least `log_bytes` of log were applied since the last snapshot.
    pub(crate) fn due(&self, log_bytes: u64) -> bool {
        self.applied_since.load(Ordering::Relaxed) >= log_bytes
    }

    /// A snapshot of the store as it is now: a durable commit, then a read transaction
    /// that holds it until it is written out or dropped.
    async fn take(&self) -> Result<Snapshot, RegionStoreError> {
        let view = self.store.snapshot().await?;
        let last_log_id = match view.get_state(APPLIED_KEY)? {
            Some(b) => codec::decode_opt_log_id(&b, "applied log id")?,
            None => None,
        };
        let last_membership = match view.get_state(MEMBERSHIP_KEY)? {
            Some(b) => codec::decode_stored_membership(&b)?,
            None => StoredMembership::default(),
        };
        let stamp = tern_store::now_ms();
        let snapshot_id = match &last_log_id {
            Some(l) => format!("{}-{}-{stamp}", l.leader_id.term, l.index),
            None => format!("0-0-{stamp}"),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        let pending = PendingSnapshot {
            meta: meta.clone(),
            view,
            dir: self.dir.clone(),
        };
        Ok(Snapshot {
            meta,
            snapshot: Box::new(SnapshotData::Pending(Box::new(pending))),
        })
    }

    /// Takes a snapshot so that openraft may purge the log behind it.
    pub(crate) async fn build(&self) -> Result<Snapshot, RegionStoreError> {
        let counted = self.applied_since.load(Ordering::Relaxed);
        let snapshot = self.take().await?;
        self.applied_since.fetch_sub(counted, Ordering::Relaxed);
        tracing::info!(id = %snapshot.meta.snapshot_id, "snapshot taken");
        Ok(snapshot)
    }

    /// The snapshot to send a member: the store as it is now, applied log id and
    /// membership included. `None` while nothing was applied.
    pub(crate) async fn current(&self) -> Result<Option<Snapshot>, RegionStoreError> {
        let snapshot = self.take().await?;
        Ok(snapshot.meta.last_log_id.is_some().then_some(snapshot))
    }

    /// An empty file for a snapshot a leader is about to send.
    pub(crate) async fn receiving(&self) -> Result<SnapshotData, RegionStoreError> {
        let file = tokio::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.dir.join(RECEIVING))
            .await
            .map_err(io)?;
        Ok(SnapshotData::File(file))
    }

    /// Replaces the store with a received snapshot (the store checks it whole first).
    pub(crate) async fn install(
        &self,
        meta: &SnapshotMeta,
        data: SnapshotData,
    ) -> Result<(), RegionStoreError> {
        let SnapshotData::File(file) = data else {
            return Err(corrupt("a node receives snapshots into files"));
        };
        let mut file = file.into_std().await;
        let expected = meta.last_log_id;
        let file = tokio::task::spawn_blocking(move || {
            file.sync_all().map_err(io)?;
            file.seek(SeekFrom::Start(0)).map_err(io)?;
            let sent = read_header(&mut file)?;
            if sent.last_log_id != expected {
                return Err(RegionStoreError::SnapshotMismatch {
                    blob: format!("{:?}", sent.last_log_id),
                    meta: format!("{expected:?}"),
                });
            }
            // The store checks the rest whole before it changes anything.
            Ok::<_, RegionStoreError>(file)
        })
        .await
        .map_err(|e| io(std::io::Error::other(e)))??;
        let rows = self.store.install_snapshot(file).await?;
        self.applied_since.store(0, Ordering::Relaxed);
        // The store holds it now; a crash before this leaves a file the next start drops.
        if let Err(e) = std::fs::remove_file(self.dir.join(RECEIVING)) {
            tracing::warn!(error = %e, "could not remove a received snapshot file");
        }
        tracing::info!(id = %meta.snapshot_id, rows, "snapshot installed");
        Ok(())
    }
}

/// A snapshot not written out yet: what it covers and a consistent view of the store.
pub struct PendingSnapshot {
    meta: SnapshotMeta,
    view: StoreSnapshot,
    dir: PathBuf,
}

impl std::fmt::Debug for PendingSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSnapshot")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl PendingSnapshot {
    /// Writes the snapshot file (layout above) into an unlinked file in the snapshot
    /// directory and returns it positioned at its first byte. Blocking: the store's whole
    /// content is read and written.
    pub fn write_file(self) -> Result<std::fs::File, RegionStoreError> {
        let path = self
            .dir
            .join(format!("send-{}.part", self.meta.snapshot_id));
        let mut file = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io)?;
        // Unlinked at once: the open handle keeps it while the transfer reads it.
        std::fs::remove_file(&path).map_err(io)?;
        let header = encode_header(&self.meta)?;
        file.write_all(&header).map_err(io)?;
        let bytes = self.view.write_to(&mut file)? + header.len() as u64;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        tracing::info!(id = %self.meta.snapshot_id, bytes, "snapshot written out for a transfer");
        Ok(file)
    }
}

fn encode_header(meta: &SnapshotMeta) -> Result<Vec<u8>, RegionStoreError> {
    let json = serde_json::to_vec(meta).map_err(|_| corrupt("metadata not encodable"))?;
    let mut out = Vec::with_capacity(12 + json.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    Ok(out)
}

/// Reads the header, leaving `file` at the store's snapshot.
fn read_header(file: &mut std::fs::File) -> Result<SnapshotMeta, RegionStoreError> {
    let mut head = [0u8; 12];
    file.read_exact(&mut head)
        .map_err(|_| corrupt("shorter than its header"))?;
    if &head[..8] != MAGIC {
        return Err(corrupt("not a tern region snapshot"));
    }
    let len = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if len > META_BYTES_MAX {
        return Err(corrupt("metadata too large"));
    }
    let mut json = vec![0u8; len as usize];
    file.read_exact(&mut json)
        .map_err(|_| corrupt("metadata truncated"))?;
    serde_json::from_slice(&json).map_err(|_| corrupt("metadata is not valid JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, LogId};
    use tern_store::StoreOptions;

    fn files(dir: &std::path::Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    /// Taking a snapshot copies nothing; writing it out for a transfer gives a file a
    /// receiver accepts (header naming what it covers, every table checked) and leaves
    /// nothing in the directory.
    #[tokio::test]
    async fn a_snapshot_is_written_out_only_for_a_transfer_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreOptions::new(dir.path().join("tern.redb"))).unwrap();
        let snaps_dir = dir.path().join("region-snapshots");
        // Leftovers of an interrupted transfer and of earlier versions go at open.
        std::fs::create_dir_all(&snaps_dir).unwrap();
        std::fs::write(snaps_dir.join("current.snap"), b"old").unwrap();
        std::fs::write(snaps_dir.join(RECEIVING), b"half").unwrap();
        let snapshots = Snapshots::open(snaps_dir.clone(), store.clone()).unwrap();
        assert!(files(&snaps_dir).is_empty());
        assert!(
            snapshots.current().await.unwrap().is_none(),
            "nothing applied yet"
        );

        let applied = Some(LogId::new(CommittedLeaderId::new(3, 1), 42));
        let state = vec![(
            APPLIED_KEY.to_string(),
            Some(codec::encode_opt_log_id(&applied)),
        )];
        store.put_state(state).await.unwrap();
        snapshots.note_applied(100);
        assert!(snapshots.due(100) && !snapshots.due(101));
        let built = snapshots.build().await.unwrap();
        assert_eq!(built.meta.last_log_id, applied);
        assert!(!snapshots.due(1), "a snapshot resets the applied bytes");
        assert!(
            files(&snaps_dir).is_empty(),
            "taking a snapshot wrote a file"
        );

        let sent = snapshots
            .current()
            .await
            .unwrap()
            .expect("a snapshot to send");
        let SnapshotData::Pending(pending) = *sent.snapshot else {
            panic!("a node's snapshot is written out only when sent");
        };
        let mut file = pending.write_file().unwrap();
        assert!(
            files(&snaps_dir).is_empty(),
            "the transfer file is unlinked"
        );
        assert_eq!(read_header(&mut file).unwrap().last_log_id, applied);
        assert!(tern_store::check_snapshot(&mut file).unwrap() > 0);
    }
}
