//! Opening a node's region storage: one redb file holds the Raft log and the state
//! machine, shared by the two halves openraft drives ([`LogStore`] and [`StateMachine`]).
//!
//! Sharing one file is what makes the state machine's cheap non-durable commits safe: redb
//! persists a non-durable commit together with the next durable one, and every log append,
//! truncation and purge is durable (see state_machine.rs).

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase};

use crate::error::RegionStoreError;
use crate::log_store::LogStore;
use crate::state_machine::{StateMachine, StateReader};
use crate::tables::*;

/// The storage of one region node, split the way openraft wants it.
pub struct RegionStore {
    pub log: LogStore,
    pub state_machine: StateMachine,
    /// Reads of the applied state for the node's own use (subscribers, status, tests).
    pub reader: StateReader,
}

impl RegionStore {
    /// Opens (or creates) the redb file at `path` with the store's default page cache
    /// ([`tern_store::CACHE_BYTES_DEFAULT`]), creating the region tables and format marker
    /// on a new file and refusing a file of an unknown format.
    pub fn open(path: impl AsRef<Path>) -> Result<RegionStore, RegionStoreError> {
        RegionStore::open_with_cache(path, tern_store::CACHE_BYTES_DEFAULT)
    }

    /// [`RegionStore::open`] with a page cache of `cache_bytes`.
    ///
    /// redb's own default is 1 GiB, and a region's log writes about a gigabyte per million
    /// 1 KiB messages, so under load that cache filled and a node's resident memory
    /// reached 1.2 GiB. Replication reads recent entries from the log's tail in memory
    /// (log_writer.rs), so the cache serves only older reads and the node's own bookkeeping.
    pub fn open_with_cache(
        path: impl AsRef<Path>,
        cache_bytes: usize,
    ) -> Result<RegionStore, RegionStoreError> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path.as_ref())?;
        RegionStore::from_db(db)
    }

    /// Opens region storage on a custom redb backend (the tests' power-loss backend).
    pub fn open_with_backend(
        backend: impl redb::StorageBackend,
    ) -> Result<RegionStore, RegionStoreError> {
        RegionStore::from_db(Database::builder().create_with_backend(backend)?)
    }

    fn from_db(db: Database) -> Result<RegionStore, RegionStoreError> {
        init(&db)?;
        let db = Arc::new(db);
        Ok(RegionStore {
            log: LogStore::new(db.clone()),
            state_machine: StateMachine::new(db.clone()),
            reader: StateReader::new(db),
        })
    }
}

fn init(db: &Database) -> Result<(), RegionStoreError> {
    {
        let txn = db.begin_read()?;
        if let Ok(meta) = txn.open_table(RAFT_META) {
            if let Some(v) = meta.get(META_FORMAT)? {
                let found = decode_format(v.value())?;
                if found == FORMAT_VERSION {
                    return Ok(());
                }
                if found != FORMAT_VERSION_WHOLE_ENTRIES {
                    return Err(RegionStoreError::UnknownFormat {
                        found,
                        expected: FORMAT_VERSION,
                    });
                }
            }
        }
    }
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(RAFT_META)?;
        meta.insert(META_FORMAT, FORMAT_VERSION.to_be_bytes().as_slice())?;
        txn.open_table(LOG)?;
        txn.open_table(LOG_PARTS)?;
        txn.open_table(SM_META)?;
        txn.open_table(STREAM_TIPS)?;
        txn.open_table(MSGS)?;
        txn.open_table(KV)?;
        txn.open_table(SNAPSHOT)?;
    }
    txn.commit()?;
    Ok(())
}

fn decode_format(b: &[u8]) -> Result<u64, RegionStoreError> {
    let arr: [u8; 8] = b.try_into().map_err(|_| crate::codec::CodecError {
        what: "format version",
        why: "not 8 bytes",
    })?;
    Ok(u64::from_be_bytes(arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.redb");
        drop(RegionStore::open(&path).unwrap());
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(RAFT_META)
                .unwrap()
                .insert(META_FORMAT, 99u64.to_be_bytes().as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        assert!(matches!(
            RegionStore::open(&path),
            Err(RegionStoreError::UnknownFormat { found: 99, .. })
        ));
    }

    /// A file of the format before large entries were stored in parts opens, and is
    /// marked with the current format.
    #[test]
    fn a_file_of_the_previous_format_opens_and_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.redb");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut meta = txn.open_table(RAFT_META).unwrap();
                let v1 = FORMAT_VERSION_WHOLE_ENTRIES.to_be_bytes();
                meta.insert(META_FORMAT, v1.as_slice()).unwrap();
                txn.open_table(LOG).unwrap();
            }
            txn.commit().unwrap();
        }
        drop(RegionStore::open(&path).unwrap());
        let db = Database::create(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let meta = txn.open_table(RAFT_META).unwrap();
        let format = meta.get(META_FORMAT).unwrap().unwrap();
        assert_eq!(decode_format(format.value()).unwrap(), FORMAT_VERSION);
        assert!(txn.open_table(LOG_PARTS).is_ok());
    }
}
