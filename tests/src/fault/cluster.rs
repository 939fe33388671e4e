//! `tern serve` processes on loopback, and the faults the harness injects into them: on
//! single nodes ([`Cluster::start`]) or as one replicated region ([`Cluster::start_region`]),
//! whose nodes can also be cut off from each other ([`Cluster::isolate`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_client::{AckLevel, Client, ClientConfig, ClientError, PubMessage, StreamConfig};
use tern_proto::ErrorCode;
use tern_region::quic::PARTITION_FILE_ENV;

/// The stream [`Cluster::leader`] publishes its probes to (created by
/// [`Cluster::start_region`]); tests use their own streams.
pub const PROBE_STREAM: &str = "probe";
/// How long one leader probe of a node may take.
const PROBE_WITHIN: Duration = Duration::from_millis(2_000);

/// One `tern serve` process with its data directory and address, kept across restarts.
pub struct NodeProcess {
    pub name: String,
    pub data: PathBuf,
    pub addr: SocketAddr,
    /// Extra `serve` arguments (region flags, config file).
    pub args: Vec<String>,
    /// The node's id in its region (`--node-id`); `None` for a node on its own.
    pub region_id: Option<u64>,
    /// The test partition file the node's region transport reads (see
    /// [`Cluster::isolate`]); `None` for a node on its own.
    pub partition_file: Option<PathBuf>,
    bin: PathBuf,
    child: Option<Child>,
}

impl NodeProcess {
    fn spawn(&mut self) {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("serve")
            .arg("--data")
            .arg(&self.data)
            .arg("--listen")
            .arg(self.addr.to_string())
            .args(&self.args)
            // `TERN_NODE_LOG` sets the nodes' log filter (e.g. openraft's elections at
            // `info`) without the test process's own logs; warnings and errors otherwise.
            .env(
                "RUST_LOG",
                std::env::var("TERN_NODE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(f) = &self.partition_file {
            cmd.env(PARTITION_FILE_ENV, f);
        }
        self.child = Some(cmd.spawn().expect("spawn tern serve"));
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

    /// Delete the node's redb files, its store (`tern.redb`) and, in a region, its Raft
    /// log and vote (`region.redb`) and its snapshots. The node must be stopped.
    pub fn wipe_storage(&mut self) {
        assert!(self.child.is_none(), "wipe a stopped node");
        for file in ["tern.redb", "region.redb"] {
            let _ = std::fs::remove_file(self.data.join(file));
        }
        let _ = std::fs::remove_dir_all(self.data.join("region-snapshots"));
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
            .map(|i| NodeProcess {
                name: format!("n{i}"),
                data: dir.path().join(format!("n{i}")),
                addr: crate::free_loopback_addr(),
                args: args(i),
                region_id: None,
                partition_file: None,
                bin: bin.to_owned(),
                child: None,
            })
            .collect();
        Cluster::launch(dir, nodes).await
    }

    /// Spawns every node and returns once each answers.
    async fn launch(dir: tempfile::TempDir, mut nodes: Vec<NodeProcess>) -> Cluster {
        nodes.iter_mut().for_each(NodeProcess::spawn);
        let cluster = Cluster { nodes, _dir: dir };
        for i in 0..cluster.nodes.len() {
            cluster.wait_ready(i).await;
        }
        cluster
    }

    /// Starts a region of `n` nodes (ids 1..=n, node `i` has id `i + 1`, region `eu`) on
    /// free loopback ports, sharing one development CA, each with its own empty partition
    /// file. Returns once every node answers clients and the region has committed the
    /// creation of [`PROBE_STREAM`] (so it has had a leader).
    pub async fn start_region(bin: &Path, n: usize) -> Cluster {
        Cluster::start_region_with(bin, n, "").await
    }

    /// As [`Cluster::start_region`], every node also reading `config` (a tern.toml
    /// fragment, e.g. `[cluster]` snapshot settings; the flags set the rest).
    pub async fn start_region_with(bin: &Path, n: usize, config: &str) -> Cluster {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config_file = dir.path().join("tern.toml");
        write_atomically(&config_file, config);
        let ca_dir = dir.path().join("region-ca");
        let addrs = free_loopback_addrs(2 * n);
        let (client, region) = addrs.split_at(n);
        let peers = (0..n)
            .map(|i| format!("{}={}/{}", i + 1, region[i], client[i]))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = (0..n)
            .map(|i| {
                let partition_file = dir.path().join(format!("partition-n{i}"));
                write_atomically(&partition_file, "");
                let args = [
                    "--region",
                    "eu",
                    "--node-id",
                    &(i + 1).to_string(),
                    "--peers",
                    &peers,
                    "--region-listen",
                    &region[i].to_string(),
                    "--region-ca-dir",
                    &ca_dir.display().to_string(),
                    "--config",
                    &config_file.display().to_string(),
                ];
                NodeProcess {
                    name: format!("n{i}"),
                    data: dir.path().join(format!("n{i}")),
                    addr: client[i],
                    args: args.iter().map(|a| a.to_string()).collect(),
                    region_id: Some(i as u64 + 1),
                    partition_file: Some(partition_file),
                    bin: bin.to_owned(),
                    child: None,
                }
            })
            .collect();
        let cluster = Cluster::launch(dir, nodes).await;
        cluster.create_probe_stream().await;
        cluster
    }

    /// Creates [`PROBE_STREAM`], retrying until the region commits it (at most 30 s): after
    /// [`Cluster::start_region`] it exists; a test that wiped every node creates it again.
    pub async fn create_probe_stream(&self) {
        let config = StreamConfig {
            name: PROBE_STREAM.into(),
            subjects: vec![format!("{PROBE_STREAM}.>")],
            max_msgs: 1_000,
            ..Default::default()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        while Instant::now() < deadline {
            match Client::connect(self.client_config()).await {
                Ok(c) => {
                    let created = c.create_stream(config.clone()).await;
                    c.close().await;
                    match created {
                        Ok(_) => return,
                        Err(e) => last = e.to_string(),
                    }
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("the region did not create the probe stream within 30 s: {last}");
    }

    /// The region's leader: the node that acks a probe publish (one attempt, through
    /// [`Cluster::node_client_config`], every running node probed at once); when none
    /// acks, the node the most `not_leader` answers name. `None` when no node acks and
    /// none names a leader (an election is on, or the leader is cut off or stopped).
    pub async fn leader(&self) -> Option<usize> {
        let answers = self.probe_all().await;
        if let Some(i) = answers
            .iter()
            .find_map(|(i, p)| (*p == Probe::Acked).then_some(*i))
        {
            return Some(i);
        }
        let mut named: BTreeMap<usize, usize> = BTreeMap::new();
        for (_, p) in &answers {
            if let Probe::Names(l) = p {
                *named.entry(*l).or_default() += 1;
            }
        }
        named.into_iter().max_by_key(|(_, n)| *n).map(|(l, _)| l)
    }

    /// Waits until a node acks a probe publish (a leader that commits), at most `within`.
    pub async fn wait_leader(&self, within: Duration) -> Option<usize> {
        let deadline = Instant::now() + within;
        loop {
            let answers = self.probe_all().await;
            if let Some(i) = answers
                .iter()
                .find_map(|(i, p)| (*p == Probe::Acked).then_some(*i))
            {
                return Some(i);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Probes every running node at once; each answer within [`PROBE_WITHIN`]. Returns as
    /// soon as one node acks (a paused or cut-off node's probe is not waited for then).
    async fn probe_all(&self) -> Vec<(usize, Probe)> {
        let servers = self.servers();
        let mut tasks = tokio::task::JoinSet::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if !node.is_running() {
                continue;
            }
            let (cfg, servers) = (self.probe_config(i), servers.clone());
            tasks.spawn(async move { (i, probe(cfg, servers).await) });
        }
        let mut answers = Vec::new();
        while let Some(answer) = tasks.join_next().await {
            let Ok(answer) = answer else { continue };
            answers.push(answer);
            if answer.1 == Probe::Acked {
                break;
            }
        }
        answers
    }

    /// Probes node `i` alone (see [`Cluster::leader`]).
    pub async fn probe(&self, i: usize) -> Probe {
        probe(self.probe_config(i), self.servers()).await
    }

    fn probe_config(&self, i: usize) -> ClientConfig {
        let mut cfg = self.node_client_config(i);
        cfg.publish_attempts_max = 1;
        cfg.request_timeout_ms = PROBE_WITHIN.as_millis() as u64;
        cfg
    }

    /// Cuts node `i` off from every other node (a complete partition: node `i` drops
    /// traffic to and from all others, and they drop traffic to and from it). Takes
    /// effect within the transport's re-read interval (100 ms).
    pub fn isolate(&self, i: usize) {
        let id = |n: &NodeProcess| n.region_id.expect("a region node");
        let others: Vec<String> = (self.nodes.iter().enumerate())
            .filter(|(k, _)| *k != i)
            .map(|(_, n)| id(n).to_string())
            .collect();
        for (k, node) in self.nodes.iter().enumerate() {
            let cut = if k == i {
                others.join("\n")
            } else {
                id(&self.nodes[i]).to_string()
            };
            write_atomically(node.partition_file.as_ref().expect("a region node"), &cut);
        }
    }

    /// Ends every partition [`Cluster::isolate`] made.
    pub fn heal(&self) {
        for node in &self.nodes {
            if let Some(f) = &node.partition_file {
                write_atomically(f, "");
            }
        }
    }

    /// Waits until every running node reports the same message count and last sequence for
    /// `stream` twice in a row (its replicas have caught up once writes have stopped), at
    /// most `within`. Returns whether they did.
    pub async fn wait_same_stream(&self, stream: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut previous = None;
        while Instant::now() < deadline {
            let mut seen = Vec::new();
            for (i, node) in self.nodes.iter().enumerate() {
                if node.is_running() {
                    seen.push(stream_state(self.node_client_config(i), stream).await);
                }
            }
            let agree = seen.iter().all(|s| s.is_some() && *s == seen[0]);
            if agree && previous.as_ref() == Some(&seen) {
                return true;
            }
            previous = agree.then_some(seen);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    /// Every node's address, for a client that may use any of them.
    pub fn servers(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.to_string()).collect()
    }

    /// A client configuration trusting node 0's development CA, with short timeouts so
    /// that faults turn into unknown outcomes quickly.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = self.default_client_config();
        c.connect_timeout_ms = 1_000;
        c.request_timeout_ms = 2_000;
        c.publish_attempts_max = 5;
        c
    }

    /// What an application gets: the client's defaults, with only the servers and the
    /// CA set. Recovery times are measured with it.
    pub fn default_client_config(&self) -> ClientConfig {
        ClientConfig::new(self.servers(), self.nodes[0].data.join("ca.pem"))
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

/// What one node answered a leader probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// It acked the publish: it is the leader.
    Acked,
    /// It refused with `not_leader` naming node `usize`.
    Names(usize),
    /// No ack and no leader named (no leader known, timeout, node down).
    NoAnswer,
}

async fn probe(cfg: ClientConfig, servers: Vec<String>) -> Probe {
    let work = async {
        let client = Client::connect(cfg).await?;
        let msg = PubMessage {
            subject: format!("{PROBE_STREAM}.leader"),
            id: None,
            key: None,
            headers: Vec::new(),
            payload: Bytes::new(),
        };
        let acked = client.publish(msg, AckLevel::Quorum).await;
        client.close().await;
        acked
    };
    match tokio::time::timeout(PROBE_WITHIN, work).await {
        Ok(Ok(_)) => Probe::Acked,
        Ok(Err(ClientError::Server(e))) if e.code == ErrorCode::NotLeader => servers
            .iter()
            .position(|s| *s == e.message)
            .map_or(Probe::NoAnswer, Probe::Names),
        _ => Probe::NoAnswer,
    }
}

/// `(msgs, last_seq)` of `stream` on the node `cfg` points at; `None` when it does not answer.
async fn stream_state(cfg: ClientConfig, stream: &str) -> Option<(u64, u64)> {
    let work = async {
        let client = Client::connect(cfg).await.ok()?;
        let info = client.stream_info(stream).await.ok();
        client.close().await;
        info.map(|i| (i.state.msgs, i.state.last_seq))
    };
    tokio::time::timeout(Duration::from_secs(3), work)
        .await
        .ok()
        .flatten()
}

/// `n` distinct free UDP ports on loopback (all bound at once, so none repeats).
fn free_loopback_addrs(n: usize) -> Vec<SocketAddr> {
    let socks: Vec<std::net::UdpSocket> = (0..n)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    socks
        .iter()
        .map(|s| s.local_addr().expect("local address"))
        .collect()
}

/// Replaces `path`'s content in one rename, so a reader never sees half of it.
fn write_atomically(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).expect("write the partition file");
    std::fs::rename(&tmp, path).expect("replace the partition file");
}
