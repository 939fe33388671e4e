//! The region transport over QUIC: one bidirectional stream per RPC, carrying one request
//! encoded in the [`crate::wire`] layout and, back, one reply. Nodes authenticate each
//! other with mutual TLS against the region's CA; ALPN `tern-region/1` keeps region
//! traffic apart from client traffic.
//!
//! Each node runs one endpoint: it accepts peers' connections (at most
//! [`REGION_CONNECTIONS_MAX`], each with at most [`REGION_STREAMS_PER_CONNECTION_MAX`]
//! requests open) and keeps one outgoing connection per peer, re-dialled when it fails.
//! Not done yet: binding a certificate to a node id (any certificate from the region CA may
//! speak for any node), certificate rotation, and revocation lists.
//!
//! Test only: a partition switch for fault tests that run nodes as separate processes.
//! When the environment variable [`PARTITION_FILE_ENV`] (`TERN_TEST_REGION_FAULTS`) names a
//! file, the transport cuts this node off from the peer ids listed in it, one per line:
//! calls to them fail at once as [`TransportError::Unreachable`], and requests from them
//! (the sender is the node id in the request's vote, which every region RPC carries) are
//! reset unanswered. A missing or empty file cuts nothing. The file is re-read at most
//! every [`PARTITION_REREAD_MS`], so a test flips the partition by rewriting it. Listing
//! the peers on both sides (the isolated node lists everyone, everyone lists it) makes a
//! complete partition even if one side's file is read late. With the variable unset (any
//! real deployment) there is no file and no check.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::limits::{REGION_CONNECTIONS_MAX, REGION_STREAMS_PER_CONNECTION_MAX, RPC_BYTES_MAX};
use crate::network::{serve, RaftReply, RaftRpc, Transport, TransportError};
use crate::{wire, NodeAddr, NodeId, Raft};

/// ALPN of region (node-to-node) traffic.
pub const REGION_ALPN: &[u8] = b"tern-region/1";
/// A peer connection with no traffic for this long is closed. Heartbeats keep live ones busy.
const IDLE_TIMEOUT_MS: u32 = 10_000;
/// Keep-alive on quiet connections, well under the idle timeout.
const KEEP_ALIVE_MS: u64 = 2_000;
/// Stream reset code: the request does not decode.
const RESET_MALFORMED: u32 = 1;
/// Stream reset code: the test partition cuts the sender off (see the module docs).
const RESET_PARTITIONED: u32 = 2;

/// Test only: names the partition file (see the module docs).
pub const PARTITION_FILE_ENV: &str = "TERN_TEST_REGION_FAULTS";
/// Test only: the partition file is read at most this often; a rewrite takes effect within
/// this time.
pub const PARTITION_REREAD_MS: u64 = 100;

/// Test only: the peers this node is cut off from, as listed in the partition file.
struct Partition {
    path: PathBuf,
    /// When the file was last read, and the ids it listed.
    cut: Mutex<(Option<Instant>, BTreeSet<NodeId>)>,
}

impl Partition {
    /// The partition named by [`PARTITION_FILE_ENV`], if the variable is set.
    fn from_env() -> Option<Arc<Partition>> {
        let path = std::env::var_os(PARTITION_FILE_ENV)?;
        tracing::warn!(file = ?path, "test partition switch on: region traffic may be cut");
        Some(Arc::new(Partition::new(path.into())))
    }

    fn new(path: PathBuf) -> Partition {
        Partition {
            path,
            cut: Mutex::new((None, BTreeSet::new())),
        }
    }

    /// Whether traffic with `peer` is cut. Reads the file when the last read is older than
    /// [`PARTITION_REREAD_MS`]: a small file, read while holding the lock so that a burst
    /// of RPCs reads it once.
    fn cuts(&self, peer: NodeId) -> bool {
        // Never held across an await or a call that can panic.
        let mut cut = self.cut.lock().unwrap_or_else(|p| p.into_inner());
        let stale = cut
            .0
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(PARTITION_REREAD_MS));
        if stale {
            // A missing or unreadable file cuts nothing (healed).
            let text = std::fs::read_to_string(&self.path).unwrap_or_default();
            *cut = (
                Some(Instant::now()),
                text.lines().filter_map(|l| l.trim().parse().ok()).collect(),
            );
        }
        cut.1.contains(&peer)
    }
}

/// The node that sent `rpc`: every region RPC carries its sender's vote (the leader's for
/// appends and snapshots, the candidate's for votes).
fn sender(rpc: &RaftRpc) -> NodeId {
    match rpc {
        RaftRpc::AppendEntries(r) => r.vote.leader_id().node_id,
        RaftRpc::Vote(r) => r.vote.leader_id().node_id,
        RaftRpc::InstallSnapshot(r) => r.vote.leader_id().node_id,
    }
}

/// The region's certificates as this node holds them.
pub struct RegionTls {
    /// CA certificates that sign every region node's certificate.
    pub ca: Vec<CertificateDer<'static>>,
    /// This node's certificate chain, signed by the region CA.
    pub chain: Vec<CertificateDer<'static>>,
    /// This node's private key.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for RegionTls {
    fn clone(&self) -> RegionTls {
        RegionTls {
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// Why the QUIC endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    /// Binding the UDP socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// rustls refused the certificates or settings.
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    /// The client certificate verifier could not be built (e.g. no usable CA).
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// quinn refused the TLS configuration.
    #[error("quic config: {0}")]
    Config(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(REGION_STREAMS_PER_CONNECTION_MAX.into());
    t.max_concurrent_uni_streams(0u32.into());
    t.max_idle_timeout(Some(quinn::VarInt::from_u32(IDLE_TIMEOUT_MS).into()));
    t.keep_alive_interval(Some(Duration::from_millis(KEEP_ALIVE_MS)));
    Arc::new(t)
}

fn configs(tls: &RegionTls) -> Result<(quinn::ServerConfig, quinn::ClientConfig), QuicError> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in &tls.ca {
        roots.add(ca.clone())?;
    }
    let roots = Arc::new(roots);

    let verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider()).build()?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(tls.chain.clone(), tls.key.clone_key())?;
    server.alpn_protocols = vec![REGION_ALPN.to_vec()];
    // Raft RPCs are not replay-safe: no 0-RTT, and no tickets that could enable it.
    server.max_early_data_size = 0;
    server.send_tls13_tickets = 0;
    let server =
        QuicServerConfig::try_from(server).map_err(|e| QuicError::Config(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server));
    server.transport_config(transport_config());
    server.migration(false);

    let mut client = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(tls.chain.clone(), tls.key.clone_key())?;
    client.alpn_protocols = vec![REGION_ALPN.to_vec()];
    client.enable_early_data = false;
    let client =
        QuicClientConfig::try_from(client).map_err(|e| QuicError::Config(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(client));
    client.transport_config(transport_config());
    Ok((server, client))
}

/// A node's region endpoint: the [`Transport`] its Raft sends with, and the server that
/// hands peers' requests to its Raft ([`QuicTransport::serve`]).
pub struct QuicTransport {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    /// One outgoing connection per peer.
    peers: Mutex<BTreeMap<NodeId, quinn::Connection>>,
    /// Test only: the partition switch, `None` unless [`PARTITION_FILE_ENV`] is set.
    partition: Option<Arc<Partition>>,
}

impl QuicTransport {
    /// Binds the node's region endpoint on `addr` (port 0 picks a free port).
    pub fn bind(addr: SocketAddr, tls: &RegionTls) -> Result<QuicTransport, QuicError> {
        QuicTransport::bind_with(addr, tls, Partition::from_env())
    }

    fn bind_with(
        addr: SocketAddr,
        tls: &RegionTls,
        partition: Option<Arc<Partition>>,
    ) -> Result<QuicTransport, QuicError> {
        let (server, client) = configs(tls)?;
        let endpoint = tern_net::endpoint(addr, Some(server), "region")?;
        Ok(QuicTransport {
            endpoint,
            client,
            peers: Mutex::new(BTreeMap::new()),
            partition,
        })
    }

    /// Test only: whether the partition switch cuts traffic with `peer`.
    fn is_cut(&self, peer: NodeId) -> bool {
        self.partition.as_ref().is_some_and(|p| p.cuts(peer))
    }

    /// The address peers reach this node at.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Serves peers' requests to `raft` until [`QuicTransport::close`].
    pub fn serve(&self, raft: Raft) -> JoinHandle<()> {
        let endpoint = self.endpoint.clone();
        let partition = self.partition.clone();
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(REGION_CONNECTIONS_MAX));
            while let Some(incoming) = endpoint.accept().await {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    incoming.refuse();
                    continue;
                };
                let (raft, partition) = (raft.clone(), partition.clone());
                tokio::spawn(async move {
                    let _slot = slot;
                    match incoming.await {
                        Ok(conn) => serve_connection(conn, raft, partition).await,
                        Err(e) => tracing::debug!(error = %e, "region handshake failed"),
                    }
                });
            }
        })
    }

    /// Closes the endpoint: every connection, both ways.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"node stopping");
    }

    /// Waits (at most `within`) until every connection has finished closing, so the
    /// endpoint's socket is released once the transport is dropped.
    pub async fn wait_closed(&self, within: std::time::Duration) {
        let _ = tokio::time::timeout(within, self.endpoint.wait_idle()).await;
        self.lock_peers().clear();
    }

    fn lock_peers(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, quinn::Connection>> {
        // Never held across an await or a call that can panic.
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live connection to `to`, dialling `addr` if there is none.
    async fn connection(
        &self,
        to: NodeId,
        addr: &NodeAddr,
    ) -> Result<quinn::Connection, TransportError> {
        if let Some(c) = self.lock_peers().get(&to) {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
        }
        let (sock, name) = resolve(&addr.quic_addr)
            .await
            .ok_or(TransportError::Unreachable(to))?;
        let conn = self
            .endpoint
            .connect_with(self.client.clone(), sock, &name)
            .map_err(|_| TransportError::Unreachable(to))?
            .await
            .map_err(|_| TransportError::Unreachable(to))?;
        self.lock_peers().insert(to, conn.clone());
        Ok(conn)
    }
}

/// Entries an append-entries request carries (0 for other requests), for traces.
fn entry_count(rpc: &RaftRpc) -> usize {
    match rpc {
        RaftRpc::AppendEntries(a) => a.entries.len(),
        _ => 0,
    }
}

/// `host:port` to a socket address and the TLS server name (the host).
async fn resolve(quic_addr: &str) -> Option<(SocketAddr, String)> {
    let (host, _) = quic_addr.rsplit_once(':')?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let sock = tokio::net::lookup_host(quic_addr).await.ok()?.next()?;
    Some((sock, host))
}

async fn serve_connection(conn: quinn::Connection, raft: Raft, partition: Option<Arc<Partition>>) {
    // quinn caps open streams per connection (REGION_STREAMS_PER_CONNECTION_MAX).
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        let (raft, partition) = (raft.clone(), partition.clone());
        tokio::spawn(async move {
            let Ok(bytes) = recv.read_to_end(RPC_BYTES_MAX).await else {
                return;
            };
            // Entries keep their data in this buffer rather than in copies of it.
            let bytes = bytes::Bytes::from(bytes);
            let reply = match wire::decode_shared_rpc(&bytes) {
                Ok(rpc) if partition.as_ref().is_some_and(|p| p.cuts(sender(&rpc))) => {
                    let _ = send.reset(RESET_PARTITIONED.into());
                    return;
                }
                Ok(rpc) => {
                    let (started, entries) = (std::time::Instant::now(), entry_count(&rpc));
                    let reply = serve(&raft, rpc).await;
                    tracing::trace!(
                        entries,
                        us = started.elapsed().as_micros() as u64,
                        "rpc served"
                    );
                    reply
                }
                Err(e) => {
                    tracing::warn!(error = %e, "malformed region request");
                    let _ = send.reset(RESET_MALFORMED.into());
                    return;
                }
            };
            match wire::encode_reply(&reply) {
                Ok(b) => {
                    if send.write_all(&b).await.is_ok() {
                        let _ = send.finish();
                    }
                }
                Err(e) => tracing::warn!(error = %e, "region reply does not encode"),
            }
        });
    }
}

impl Transport for QuicTransport {
    async fn call(
        &self,
        _from: NodeId,
        to: NodeId,
        addr: &NodeAddr,
        rpc: RaftRpc,
    ) -> Result<RaftReply, TransportError> {
        if self.is_cut(to) {
            return Err(TransportError::Unreachable(to));
        }
        let request = wire::encode_rpc(&rpc).map_err(|e| TransportError::Codec {
            peer: to,
            reason: e.to_string(),
        })?;
        let (started, entries, bytes) =
            (std::time::Instant::now(), entry_count(&rpc), request.len());
        let conn = self.connection(to, addr).await?;
        let lost = |_| TransportError::Lost(to);
        let (mut send, mut recv) = conn.open_bi().await.map_err(|_| {
            // The connection is gone; dial afresh next time.
            self.forget(to, &conn);
            TransportError::Lost(to)
        })?;
        let mut call = Call::start(self, to, &conn);
        // The request moves into quinn's send buffer as it is, without a copy.
        send.write_chunk(request.into()).await.map_err(lost)?;
        send.finish().map_err(|_| TransportError::Lost(to))?;
        let reply = recv
            .read_to_end(RPC_BYTES_MAX)
            .await
            .map_err(|_| TransportError::Lost(to))?;
        call.answered();
        tracing::trace!(
            to,
            entries,
            bytes,
            us = started.elapsed().as_micros() as u64,
            "rpc answered"
        );
        wire::decode_reply(&reply).map_err(|e| TransportError::Codec {
            peer: to,
            reason: e.to_string(),
        })
    }
}

impl QuicTransport {
    /// Drops `conn` as the connection to `to` (unless it was replaced already) and closes
    /// it: the next call dials afresh.
    fn forget(&self, to: NodeId, conn: &quinn::Connection) {
        let mut peers = self.lock_peers();
        if peers
            .get(&to)
            .is_some_and(|c| c.stable_id() == conn.stable_id())
        {
            peers.remove(&to);
        }
        drop(peers);
        conn.close(0u32.into(), b"no answer");
    }
}

/// One request on a peer connection, watched for a dead connection.
///
/// A peer that was killed, paused, or restarted on the same address (its new endpoint
/// does not know the old connection and cannot reset it) leaves the connection looking
/// open until the QUIC idle timeout, [`IDLE_TIMEOUT_MS`]; every request sent on it waits
/// out openraft's deadline meanwhile, so a restarted follower hears no leader and starts
/// elections, and a survivor cannot win one. So when a request is abandoned (dropped at
/// its deadline) and nothing at all arrived on the connection since it was sent, the
/// connection is forgotten: a live peer's QUIC stack acknowledges the request within its
/// ack delay (25 ms) whatever its Raft is doing, so silence for a whole deadline (100 ms
/// or more) means the connection is dead. A slow but live peer keeps its connection. This
/// assumes round trips well under openraft's shortest deadline (the heartbeat interval),
/// which a region's nodes need anyway: with longer ones no heartbeat would be answered in
/// time either.
struct Call<'a> {
    transport: &'a QuicTransport,
    to: NodeId,
    conn: &'a quinn::Connection,
    /// Datagrams received on the connection before the request was sent.
    rx_before: u64,
    answered: bool,
}

impl<'a> Call<'a> {
    fn start(transport: &'a QuicTransport, to: NodeId, conn: &'a quinn::Connection) -> Self {
        Call {
            transport,
            to,
            conn,
            rx_before: conn.stats().udp_rx.datagrams,
            answered: false,
        }
    }

    fn answered(&mut self) {
        self.answered = true;
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if !self.answered && self.conn.stats().udp_rx.datagrams == self.rx_before {
            tracing::debug!(
                peer = self.to,
                "no answer and no acknowledgement; redialling"
            );
            self.transport.forget(self.to, self.conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{start_on, RegionConfig, RegionStore};

    /// A development region CA and a loopback certificate signed by it.
    fn tls() -> RegionTls {
        let dir = tempfile::tempdir().expect("temp dir");
        let c = tern_net::region_dev_certs(dir.path()).expect("region certs");
        RegionTls {
            ca: c.ca,
            chain: c.chain,
            key: c.key,
        }
    }

    fn vote_from(id: NodeId) -> RaftRpc {
        RaftRpc::Vote(openraft::raft::VoteRequest {
            vote: openraft::Vote::new(1, id),
            last_log_id: None,
        })
    }

    fn reread() -> Duration {
        Duration::from_millis(PARTITION_REREAD_MS + 20)
    }

    #[test]
    fn the_partition_file_is_read_by_time_and_empty_or_missing_cuts_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("cut");
        let p = Partition::new(path.clone());
        let read_at = Instant::now();
        assert!(!p.cuts(2), "a missing file cuts nothing");
        std::fs::write(&path, "2\n 3 \n\nnot an id\n").expect("write");
        let cached = p.cuts(2);
        // Only meaningful when this ran within the interval (a loaded machine may stall).
        if read_at.elapsed() < Duration::from_millis(PARTITION_REREAD_MS / 2) {
            assert!(!cached, "the file is not re-read before the interval");
        }
        std::thread::sleep(reread());
        assert!(p.cuts(2) && p.cuts(3) && !p.cuts(1));
        std::fs::write(&path, "").expect("write");
        std::thread::sleep(reread());
        assert!(!p.cuts(2) && !p.cuts(3), "an empty file heals");
        assert_eq!(sender(&vote_from(7)), 7);
    }

    /// Node 1 calls node 2 over QUIC: cut on the sending side the call fails as
    /// unreachable at once; cut on the serving side only (node 2 lists node 1) the request
    /// goes unanswered; healed, node 2's Raft answers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_partition_cuts_both_sending_and_serving_and_heals() {
        let dir = tempfile::tempdir().expect("dir");
        let tls = tls();
        let (file1, file2) = (dir.path().join("cut1"), dir.path().join("cut2"));
        let t1 = QuicTransport::bind_with(
            "127.0.0.1:0".parse().expect("addr"),
            &tls,
            Some(Arc::new(Partition::new(file1.clone()))),
        )
        .expect("bind 1");
        let t2 = Arc::new(
            QuicTransport::bind_with(
                "127.0.0.1:0".parse().expect("addr"),
                &tls,
                Some(Arc::new(Partition::new(file2.clone()))),
            )
            .expect("bind 2"),
        );
        let config = RegionConfig::default().to_openraft(1).expect("config");
        let store = RegionStore::open(dir.path().join("n2.redb")).expect("store");
        let (raft2, _) = start_on(2, config, store, t2.clone()).await.expect("start");
        let serving = t2.serve(raft2.clone());
        let to2 = NodeAddr::new(t2.local_addr().expect("addr").to_string());

        let answered = t1.call(1, 2, &to2, vote_from(1)).await;
        assert!(matches!(answered, Ok(RaftReply::Vote(_))), "{answered:?}");

        std::fs::write(&file1, "2\n").expect("write");
        tokio::time::sleep(reread()).await;
        let r = t1.call(1, 2, &to2, vote_from(1)).await;
        assert_eq!(r.err(), Some(TransportError::Unreachable(2)));

        std::fs::write(&file1, "").expect("write");
        std::fs::write(&file2, "1\n").expect("write");
        tokio::time::sleep(reread()).await;
        let r = t1.call(1, 2, &to2, vote_from(1)).await;
        assert_eq!(r.err(), Some(TransportError::Lost(2)));

        std::fs::write(&file2, "").expect("write");
        tokio::time::sleep(reread()).await;
        let healed = t1.call(1, 2, &to2, vote_from(1)).await;
        assert!(matches!(healed, Ok(RaftReply::Vote(_))), "{healed:?}");

        let _ = raft2.shutdown().await;
        t2.close();
        t1.close();
        serving.abort();
    }

    /// Relays UDP between `client` and a backend that the test can switch; packets from
    /// anyone else are dropped. Switching the backend is a peer restarted on the same
    /// address: the new endpoint knows nothing of the client's connection, the old one
    /// falls silent.
    async fn relay(
        client: SocketAddr,
        backend: SocketAddr,
    ) -> (SocketAddr, Arc<Mutex<SocketAddr>>, JoinHandle<()>) {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind relay");
        let addr = sock.local_addr().expect("relay addr");
        let backend = Arc::new(Mutex::new(backend));
        let task = tokio::spawn({
            let backend = backend.clone();
            async move {
                let mut buf = vec![0u8; 65_536];
                while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                    let current = *backend.lock().expect("relay lock");
                    let to = match from {
                        f if f == client => current,
                        f if f == current => client,
                        _ => continue,
                    };
                    let _ = sock.send_to(&buf[..n], to).await;
                }
            }
        });
        (addr, backend, task)
    }

    /// A peer restarted on the same address: the caller's old connection gets no answer;
    /// the first call abandoned at its deadline drops it, and the next one dials the new
    /// process (without this, every call waits out the 10 s idle timeout).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_restarted_on_the_same_address_is_redialled_after_one_silent_call() {
        let dir = tempfile::tempdir().expect("dir");
        let tls = tls();
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let t1 = QuicTransport::bind_with(any, &tls, None).expect("bind 1");
        let config = RegionConfig::default().to_openraft(1).expect("config");
        let mut peers = Vec::new();
        for id in [2u64, 3] {
            let t = Arc::new(QuicTransport::bind_with(any, &tls, None).expect("bind"));
            let store = RegionStore::open(dir.path().join(format!("n{id}.redb"))).expect("store");
            let (raft, _) = start_on(id, config.clone(), store, t.clone())
                .await
                .expect("start");
            let serving = t.serve(raft.clone());
            peers.push((t, raft, serving));
        }
        let (relay_addr, backend, relay_task) = relay(
            t1.local_addr().expect("addr"),
            peers[0].0.local_addr().expect("addr"),
        )
        .await;
        let to2 = NodeAddr::new(relay_addr.to_string());
        let deadline = Duration::from_millis(200);
        let call = || tokio::time::timeout(deadline, t1.call(1, 2, &to2, vote_from(1)));

        let first = call().await;
        assert!(matches!(first, Ok(Ok(RaftReply::Vote(_)))), "{first:?}");

        *backend.lock().expect("relay lock") = peers[1].0.local_addr().expect("addr");
        let restarted = Instant::now();
        let mut silent = 0;
        loop {
            match call().await {
                Ok(Ok(RaftReply::Vote(_))) => break,
                other => {
                    silent += 1;
                    assert!(silent <= 3, "no answer from the restarted peer: {other:?}");
                }
            }
        }
        assert!(restarted.elapsed() < Duration::from_secs(2));

        relay_task.abort();
        t1.close();
        for (t, raft, serving) in peers {
            let _ = raft.shutdown().await;
            t.close();
            serving.abort();
        }
    }
}
