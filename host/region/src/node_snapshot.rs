//! Snapshots of a node's store, as files: what lets the log be purged. A node builds one
//! once the log applied since the last holds `snapshot_log_bytes` and at least as many
//! bytes as that snapshot ([`Snapshots::due`], checked every second by the node; a third
//! more on the second member and two thirds more on the third, so they take turns), and
//! openraft then drops the log behind it (keeping `logs_kept_after_snapshot` entries); a
//! member that needs what was dropped (a new one, a wiped one, one that was away too long)
//! is sent the snapshot and then the log after it.
//!
//! File layout: `magic "TERNRSNP" | meta length u32 (LE) | meta (openraft's snapshot
//! metadata, JSON) | the store's snapshot` (tern-store's snapshot.rs: every table, with a
//! row count and crc32). The file is sent as it is, so the receiver keeps the same file.
//!
//! Files live in `<data>/region-snapshots/`: `current.snap` is the newest snapshot, built
//! or received; a build or a transfer in progress writes a `.part` file, fsynced and
//! renamed over `current.snap` when complete (a received one once it is checked, before
//! the store installs it). A newer snapshot never gives way to an older one (a build that
//! started before an install finishes after it).
//!
//! Consistency: the store's snapshot is one read transaction, taken right after a durable
//! commit, and the applied log id and membership are read from the same transaction. So
//! the log openraft purges behind a snapshot is never needed to repair the store after a
//! crash: everything it held is durable in the store.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::{LogId, StoredMembership};
use tern_store::Store;

use crate::codec;
use crate::error::RegionStoreError;
use crate::{NodeId, Snapshot, SnapshotData, SnapshotMeta};

const MAGIC: &[u8; 8] = b"TERNRSNP";
const CURRENT: &str = "current.snap";
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

/// A node's snapshot files. Cheap to clone: the builder and the state machine share one.
#[derive(Clone)]
pub(crate) struct Snapshots {
    dir: PathBuf,
    store: Store,
    /// The log id `current.snap` covers, so an older snapshot never replaces a newer one.
    current: Arc<Mutex<Option<LogId<NodeId>>>>,
    /// Bytes of log entries applied since the last snapshot was built or installed.
    applied_since: Arc<AtomicU64>,
    /// Size of `current.snap`.
    current_bytes: Arc<AtomicU64>,
    /// Thirds added to the threshold (0-2, from the node id), so the members of a region,
    /// which apply the same log, do not all write a snapshot at the same moment.
    stagger: u64,
}

impl Snapshots {
    /// Opens the snapshot directory, dropping transfers and builds a crash interrupted.
    pub(crate) fn open(
        dir: PathBuf,
        store: Store,
        node: NodeId,
    ) -> Result<Snapshots, RegionStoreError> {
        std::fs::create_dir_all(&dir).map_err(io)?;
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().is_some_and(|e| e == "part") {
                std::fs::remove_file(&path).map_err(io)?;
            }
        }
        let snapshots = Snapshots {
            dir,
            store,
            current: Arc::default(),
            applied_since: Arc::default(),
            current_bytes: Arc::default(),
            stagger: node.saturating_sub(1) % 3,
        };
        let current = match snapshots.open_current()? {
            Some((meta, file)) => {
                let bytes = file.metadata().map_err(io)?.len();
                snapshots.current_bytes.store(bytes, Ordering::Relaxed);
                meta.last_log_id
            }
            None => None,
        };
        *snapshots.current.lock().unwrap_or_else(|p| p.into_inner()) = current;
        Ok(snapshots)
    }

    /// Counts log bytes applied to the store.
    pub(crate) fn note_applied(&self, bytes: u64) {
        self.applied_since.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Whether enough log was applied since the last snapshot to build the next: at least
    /// `log_bytes`, and at least the last snapshot's size (so snapshot writes stay about
    /// as large as the log they let go of, however much the streams retain), plus this
    /// node's stagger.
    pub(crate) fn due(&self, log_bytes: u64) -> bool {
        let since = self.applied_since.load(Ordering::Relaxed);
        let base = log_bytes.max(self.current_bytes.load(Ordering::Relaxed));
        since >= base.saturating_add(base / 3 * self.stagger)
    }

    fn open_current(&self) -> Result<Option<(SnapshotMeta, std::fs::File)>, RegionStoreError> {
        let mut file = match std::fs::File::open(self.dir.join(CURRENT)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let meta = read_header(&mut file)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        Ok(Some((meta, file)))
    }

    /// The newest snapshot, positioned at its first byte.
    pub(crate) fn current(&self) -> Result<Option<Snapshot>, RegionStoreError> {
        Ok(self.open_current()?.map(|(meta, file)| Snapshot {
            meta,
            snapshot: Box::new(SnapshotData::File(tokio::fs::File::from_std(file))),
        }))
    }

    /// Builds a snapshot of the store as it is now and makes it the current one.
    pub(crate) async fn build(&self) -> Result<Snapshot, RegionStoreError> {
        let counted = self.applied_since.load(Ordering::Relaxed);
        let snap = self.store.snapshot().await?;
        let last_log_id = match snap.get_state(APPLIED_KEY)? {
            Some(b) => codec::decode_opt_log_id(&b, "applied log id")?,
            None => None,
        };
        let last_membership = match snap.get_state(MEMBERSHIP_KEY)? {
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
        let part = self.dir.join(format!("build-{}.part", meta.snapshot_id));
        let this = self.clone();
        let header = encode_header(&meta)?;
        let (meta, file) = tokio::task::spawn_blocking(move || {
            let write = || {
                let mut file = std::fs::File::options()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&part)
                    .map_err(io)?;
                file.write_all(&header).map_err(io)?;
                let bytes = snap.write_to(&mut file)? + header.len() as u64;
                file.sync_all().map_err(io)?;
                tracing::info!(id = %meta.snapshot_id, bytes, "snapshot built");
                this.promote(&part, &meta, bytes)?;
                file.seek(SeekFrom::Start(0)).map_err(io)?;
                Ok::<_, RegionStoreError>(file)
            };
            match write() {
                Ok(file) => Ok((meta, file)),
                Err(e) => {
                    // A failed build (e.g. a full disk) leaves nothing behind.
                    let _ = std::fs::remove_file(&part);
                    Err(e)
                }
            }
        })
        .await
        .map_err(|e| io(std::io::Error::other(e)))??;
        self.applied_since.fetch_sub(counted, Ordering::Relaxed);
        Ok(Snapshot {
            meta,
            snapshot: Box::new(SnapshotData::File(tokio::fs::File::from_std(file))),
        })
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

    /// Replaces the store with a received snapshot and makes it the current one.
    pub(crate) async fn install(
        &self,
        meta: &SnapshotMeta,
        data: SnapshotData,
    ) -> Result<(), RegionStoreError> {
        let SnapshotData::File(file) = data else {
            return Err(corrupt("a node receives snapshots into files"));
        };
        let mut file = file.into_std().await;
        let part = self.dir.join(RECEIVING);
        let this = self.clone();
        let promoted = meta.clone();
        // Checked whole and made current before the store changes: after a crash at any
        // point the current snapshot is never older than what the store holds (a newer one
        // is harmless: it is the region's committed state, and can be sent on as it is).
        let file = tokio::task::spawn_blocking(move || {
            file.sync_all().map_err(io)?;
            file.seek(SeekFrom::Start(0)).map_err(io)?;
            let sent = read_header(&mut file)?;
            if sent.last_log_id != promoted.last_log_id {
                return Err(RegionStoreError::SnapshotMismatch {
                    blob: format!("{:?}", sent.last_log_id),
                    meta: format!("{:?}", promoted.last_log_id),
                });
            }
            tern_store::check_snapshot(&mut file)?;
            let bytes = file.metadata().map_err(io)?.len();
            this.promote(&part, &promoted, bytes)?;
            Ok::<_, RegionStoreError>(file)
        })
        .await
        .map_err(|e| io(std::io::Error::other(e)))??;
        let rows = self.store.install_snapshot(file).await?;
        self.applied_since.store(0, Ordering::Relaxed);
        tracing::info!(id = %meta.snapshot_id, rows, "snapshot installed");
        Ok(())
    }

    /// Renames a complete, fsynced `.part` file over `current.snap`, unless the current
    /// one is newer (then the part file goes).
    fn promote(
        &self,
        part: &Path,
        meta: &SnapshotMeta,
        bytes: u64,
    ) -> Result<(), RegionStoreError> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if *current > meta.last_log_id {
            std::fs::remove_file(part).map_err(io)?;
            return Ok(());
        }
        std::fs::rename(part, self.dir.join(CURRENT)).map_err(io)?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        *current = meta.last_log_id;
        self.current_bytes.store(bytes, Ordering::Relaxed);
        Ok(())
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
