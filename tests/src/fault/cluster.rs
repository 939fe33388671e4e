//! `tern serve` processes on loopback, and the faults the harness injects into them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tern_client::{Client, ClientConfig};

/// One `tern serve` process with its data directory and address, kept across restarts.
pub struct NodeProcess {
    pub name: String,
    pub data: PathBuf,
    pub addr: SocketAddr,
    /// Extra `serve` arguments (region flags, config file).
    pub args: Vec<String>,
    bin: PathBuf,
    child: Option<Child>,
}

impl NodeProcess {
    fn spawn(&mut self) {
        let child = Command::new(&self.bin)
            .arg("serve")
            .arg("--data")
            .arg(&self.data)
            .arg("--listen")
            .arg(self.addr.to_string())
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tern serve");
        self.child = Some(child);
    }

    fn pid(&self) -> Option<String> {
        self.child.as_ref().map(|c| c.id().to_string())
    }

    fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").args([sig, &pid]).status();
        }
    }

    /// SIGKILL, and reap the process.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the process stops answering, its sockets stay open.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`NodeProcess::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// SIGTERM and wait (bounded) for a clean exit; SIGKILL if it does not come.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        self.signal("-TERM");
        let mut child = self.child.take()?;
        for _ in 0..400 {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Start again on the same data directory and address.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Delete the node's redb file (the node must be stopped).
    pub fn wipe_storage(&mut self) {
        assert!(self.child.is_none(), "wipe a stopped node");
        let _ = std::fs::remove_file(self.data.join("tern.redb"));
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}

/// Nodes on loopback, each in its own process and data directory under one temporary
/// directory, removed with the cluster.
pub struct Cluster {
    pub nodes: Vec<NodeProcess>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` nodes of the `tern` binary at `bin`; `args(i)` gives node `i` its extra
    /// `serve` arguments. Returns once every node answers.
    pub async fn start(bin: &Path, n: usize, args: impl Fn(usize) -> Vec<String>) -> Cluster {
        let dir = tempfile::tempdir().expect("temporary directory");
        let nodes = (0..n)
            .map(|i| {
                let mut node = NodeProcess {
                    name: format!("n{i}"),
                    data: dir.path().join(format!("n{i}")),
                    addr: crate::free_loopback_addr(),
                    args: args(i),
                    bin: bin.to_owned(),
                    child: None,
                };
                node.spawn();
                node
            })
            .collect();
        let cluster = Cluster { nodes, _dir: dir };
        for i in 0..n {
            cluster.wait_ready(i).await;
        }
        cluster
    }

    /// Every node's address, for a client that may use any of them.
    pub fn servers(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.to_string()).collect()
    }

    /// A client configuration trusting node 0's development CA, with short timeouts so
    /// that faults turn into unknown outcomes quickly.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new(self.servers(), self.nodes[0].data.join("ca.pem"));
        c.connect_timeout_ms = 1_000;
        c.request_timeout_ms = 2_000;
        c.publish_attempts_max = 5;
        c
    }

    /// A client configuration for node `i` alone.
    pub fn node_client_config(&self, i: usize) -> ClientConfig {
        let mut c = self.client_config();
        c.servers = vec![self.nodes[i].addr.to_string()];
        c
    }

    /// Waits (at most 30 s) until node `i` accepts a client.
    pub async fn wait_ready(&self, i: usize) {
        for _ in 0..300 {
            if self.nodes[i].data.join("ca.pem").exists() {
                let attempt = Client::connect(self.node_client_config(i));
                if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_secs(2), attempt).await {
                    c.close().await;
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "node {} at {} did not become ready",
            self.nodes[i].name, self.nodes[i].addr
        );
    }
}
