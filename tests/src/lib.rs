//! Test harness: real nodes on 127.0.0.1 with real redb files in temporary directories,
//! and clients that trust their development CA.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tern_broker::{Config, FaultSwitch, Node};
use tern_client::{Client, ClientConfig, Delivery, Subscription};

pub mod fault;

pub use tern_client;
pub use tern_proto;

/// Configuration for a test node in `dir`: any free loopback port, fast purges.
pub fn test_config(dir: &Path) -> Config {
    let mut c = Config {
        listen: "127.0.0.1:0".parse().expect("loopback address"),
        data_dir: dir.to_owned(),
        ..Config::default()
    };
    c.storage.purge_interval_ms = 50;
    c.shutdown.timeout_ms = 2_000;
    c
}

/// A node running in this process.
pub struct TestNode {
    pub node: Option<Node>,
    pub config: Config,
    pub faults: Arc<FaultSwitch>,
    _dir: Option<tempfile::TempDir>,
}

impl TestNode {
    /// Start a node on a fresh data directory.
    pub async fn start() -> TestNode {
        TestNode::start_with(|_| {}).await
    }

    /// Start a node on a fresh data directory, adjusting its configuration first.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestNode {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = test_config(dir.path());
        adjust(&mut config);
        let faults = Arc::new(FaultSwitch::default());
        let node = Node::start_with_faults(config.clone(), faults.clone())
            .await
            .expect("node starts");
        TestNode {
            node: Some(node),
            config,
            faults,
            _dir: Some(dir),
        }
    }

    pub fn addr(&self) -> String {
        self.node().local_addr().to_string()
    }

    pub fn node(&self) -> &Node {
        self.node.as_ref().expect("node is running")
    }

    pub fn ca(&self) -> PathBuf {
        self.config.data_dir.join("ca.pem")
    }

    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new(vec![self.addr()], self.ca());
        c.connect_timeout_ms = 5_000;
        c.request_timeout_ms = 10_000;
        c
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.client_config())
            .await
            .expect("client connects")
    }

    /// Start a node on `dir`, which the caller owns: it outlives the node, so another node
    /// can be started on the same data later.
    pub async fn start_in(dir: PathBuf, adjust: impl FnOnce(&mut Config)) -> TestNode {
        let mut config = test_config(&dir);
        adjust(&mut config);
        let faults = Arc::new(FaultSwitch::default());
        let node = Node::start_with_faults(config.clone(), faults.clone())
            .await
            .expect("node starts");
        TestNode {
            node: Some(node),
            config,
            faults,
            _dir: None,
        }
    }

    /// Stop gracefully and start again on the same data directory (a new port).
    pub async fn restart(&mut self) {
        if let Some(n) = self.node.take() {
            n.shutdown().await;
        }
        let node = Node::start_with_faults(self.config.clone(), self.faults.clone())
            .await
            .expect("node restarts");
        self.node = Some(node);
    }

    pub async fn stop(mut self) {
        if let Some(n) = self.node.take() {
            n.shutdown().await;
        }
    }
}

/// Sends the nodes' logs to the test's output, filtered by `RUST_LOG` (nothing when it is
/// unset). Call it first in a test whose failure needs the nodes' side of the story.
pub fn log_to_test_output() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A loopback address whose UDP port was free a moment ago, for a node that must come
/// back on the same port after `restart` (set it as `config.listen`).
pub fn free_loopback_addr() -> SocketAddr {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a free port");
    sock.local_addr().expect("local address")
}

/// The next delivery of `sub`, waiting at most `within`; panics on an error, on the end of
/// the subscription, or when nothing arrives in time.
pub async fn next_delivery(sub: &mut Subscription, within: Duration) -> Delivery {
    match tokio::time::timeout(within, sub.next()).await {
        Ok(Some(Ok(d))) => d,
        Ok(Some(Err(e))) => panic!("subscription failed: {e}"),
        Ok(None) => panic!("subscription ended"),
        Err(_) => panic!("no delivery within {within:?}"),
    }
}

/// The next `n` deliveries of `sub`, each waited for at most `each`.
pub async fn next_deliveries(sub: &mut Subscription, n: usize, each: Duration) -> Vec<Delivery> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(next_delivery(sub, each).await);
    }
    out
}

/// Assert that `sub` delivers nothing (and does not end) for `quiet`.
pub async fn assert_quiet(sub: &mut Subscription, quiet: Duration) {
    if let Ok(got) = tokio::time::timeout(quiet, sub.next()).await {
        match got {
            Some(Ok(d)) => panic!(
                "unexpected delivery: seq {} subject {} count {}",
                d.stamp.local_seq, d.subject, d.delivery_count
            ),
            Some(Err(e)) => panic!("subscription failed: {e}"),
            None => panic!("subscription ended"),
        }
    }
}

/// Poll `check` until it returns `Some`, at most `attempts` times `every` apart.
pub async fn eventually<T, F, Fut>(attempts: u32, every: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..attempts {
        if let Some(v) = check().await {
            return Some(v);
        }
        tokio::time::sleep(every).await;
    }
    None
}

/// A raw QUIC connection to a node, for speaking the wire protocol byte by byte.
pub async fn raw_connect(node: &TestNode) -> quinn::Connection {
    let cfg = tern_net::client_config(&node.ca(), &tern_net::TransportLimits::default())
        .expect("client config");
    let mut ep =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("address")).expect("endpoint");
    ep.set_default_client_config(cfg);
    ep.connect(node.node().local_addr(), "localhost")
        .expect("connect")
        .await
        .expect("handshake")
}

/// Send raw bytes on a new stream and read frames back until the stream ends.
pub async fn raw_exchange(
    conn: &quinn::Connection,
    bytes: &[u8],
) -> Result<Vec<tern_proto::Frame>, tern_net::NetError> {
    let (mut send, recv) = conn.open_bi().await?;
    send.write_all(bytes).await?;
    let _ = send.finish();
    let mut reader = tern_net::FrameReader::new(recv, tern_proto::limits::FRAME_BYTES_MAX);
    let mut out = Vec::new();
    while let Some(f) = reader.next().await? {
        out.push(f);
    }
    Ok(out)
}
