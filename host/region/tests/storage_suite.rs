//! openraft's own storage conformance suite (`openraft::testing::Suite`) against the redb
//! log store and state machine: every test case gets a fresh redb file in a temp dir, so
//! each case runs on real files with real fsyncs.

use openraft::testing::{StoreBuilder, Suite};
use openraft::{AnyError, StorageError, StorageIOError};
use tempfile::TempDir;
use tern_region::{LogStore, NodeId, RegionStore, StateMachine, TypeConfig};

struct FreshFile;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for FreshFile {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = TempDir::new().map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        let store = RegionStore::open(dir.path().join("node.redb"))
            .map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        Ok((dir, store.log, store.state_machine))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(FreshFile) {
        panic!("openraft storage suite failed: {e}");
    }
}
