//! openraft's own storage conformance suite (`openraft::testing::Suite`) against the redb
//! log store and state machine: every test case gets a fresh redb file in a temp dir, so
//! each case runs on real files with real fsyncs. It runs twice: with the log written on
//! the caller's thread (what the simulation uses) and on a writer thread (what a node
//! runs).

use openraft::testing::{StoreBuilder, Suite};
use openraft::{AnyError, StorageError, StorageIOError};
use tempfile::TempDir;
use tern_region::{LogStore, NodeId, RegionStore, StateMachine, TypeConfig};

struct FreshFile {
    writer_thread: bool,
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for FreshFile {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = TempDir::new().map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        let store = RegionStore::open(dir.path().join("node.redb"))
            .map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        let log = if self.writer_thread {
            let (log, _closed) = store
                .log
                .with_writer_thread()
                .map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
            log
        } else {
            store.log
        };
        Ok((dir, log, store.state_machine))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(FreshFile {
        writer_thread: false,
    }) {
        panic!("openraft storage suite failed: {e}");
    }
}

#[test]
fn openraft_storage_suite_with_a_writer_thread() {
    if let Err(e) = Suite::test_all(FreshFile {
        writer_thread: true,
    }) {
        panic!("openraft storage suite failed with a writer thread: {e}");
    }
}
