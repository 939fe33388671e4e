//! Producers that record every publish in a [`History`], and the drain of a node.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tern_client::{AckLevel, Client, ClientConfig, PubMessage, SubscribeOptions};
use tokio_util::sync::CancellationToken;

use super::check::StoredMessage;
use super::cluster::Cluster;
use super::history::{History, Outcome};

/// Load before the first fault and after the last, so RTO and throughput have a baseline.
const LOAD_AROUND_FAULTS: Duration = Duration::from_millis(500);

/// Producers publishing to `<stream>.<key>` with ids `p<producer>-<n>` and, per key, a
/// counter the checker uses for per-key order. Each producer owns its keys and publishes
/// one message at a time, so a key's acked messages must be stored in counter order.
#[derive(Clone, Debug)]
pub struct Workload {
    pub stream: String,
    pub producers: usize,
    pub keys_per_producer: usize,
    pub payload_bytes: usize,
}

impl Workload {
    pub fn new(stream: &str) -> Workload {
        Workload {
            stream: stream.into(),
            producers: 4,
            keys_per_producer: 4,
            payload_bytes: 256,
        }
    }

    /// Runs the producers until `stop` is cancelled; each returns after its publish in
    /// flight ends (bounded by the client's timeouts and attempts).
    pub async fn run(&self, cfg: ClientConfig, history: Arc<History>, stop: CancellationToken) {
        let mut tasks = Vec::new();
        for p in 0..self.producers {
            let (w, cfg, history, stop) =
                (self.clone(), cfg.clone(), history.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                w.produce(p, cfg, history, stop).await
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Runs the producers against `cluster` while `faults` runs, with half a second of
    /// load before and after it, then stops them; returns what they recorded. The
    /// producers use [`Cluster::client_config`].
    pub async fn run_around(
        &self,
        cluster: &mut Cluster,
        faults: impl AsyncFnOnce(&mut Cluster, &Arc<History>),
    ) -> Arc<History> {
        let cfg = cluster.client_config();
        self.run_around_with(cfg, cluster, faults).await
    }

    /// [`Workload::run_around`] with producers using `cfg`.
    pub async fn run_around_with(
        &self,
        cfg: ClientConfig,
        cluster: &mut Cluster,
        faults: impl AsyncFnOnce(&mut Cluster, &Arc<History>),
    ) -> Arc<History> {
        let history = Arc::new(History::new());
        let stop = CancellationToken::new();
        let load = tokio::spawn({
            let w = self.clone();
            let (history, stop) = (history.clone(), stop.clone());
            async move { w.run(cfg, history, stop).await }
        });
        tokio::time::sleep(LOAD_AROUND_FAULTS).await;
        faults(cluster, &history).await;
        tokio::time::sleep(LOAD_AROUND_FAULTS).await;
        stop.cancel();
        let _ = load.await;
        history
    }

    async fn produce(
        &self,
        p: usize,
        cfg: ClientConfig,
        history: Arc<History>,
        stop: CancellationToken,
    ) {
        let client = loop {
            match Client::connect(cfg.clone()).await {
                Ok(c) => break c,
                Err(_) if !stop.is_cancelled() => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(_) => return,
            }
        };
        let mut counters = vec![0u64; self.keys_per_producer];
        let mut n = 0usize;
        while !stop.is_cancelled() {
            let k = n % self.keys_per_producer;
            counters[k] += 1;
            let key = format!("p{p}k{k}");
            let id = format!("p{p}-{n}");
            let op = history.invoke(p, &id, &key, counters[k]);
            let msg = PubMessage {
                subject: format!("{}.{key}", self.stream),
                id: Some(id),
                key: Some(key),
                headers: Vec::new(),
                payload: Bytes::from(vec![b'x'; self.payload_bytes]),
            };
            let outcome = Outcome::of_publish(client.publish(msg, AckLevel::Quorum).await);
            history.complete(op, outcome);
            n += 1;
        }
        client.close().await;
    }
}

/// Reads the whole stream from the node `cfg` points at, in sequence order (at most
/// `within` in all).
pub async fn drain(
    cfg: ClientConfig,
    stream: &str,
    within: Duration,
) -> Result<Vec<StoredMessage>, String> {
    let work = async {
        let client = Client::connect(cfg).await.map_err(|e| e.to_string())?;
        let info = client
            .stream_info(stream)
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(info.state.msgs as usize);
        if info.state.msgs > 0 {
            let mut sub = client
                .subscribe(SubscribeOptions::new(format!("{stream}.>")))
                .await
                .map_err(|e| e.to_string())?;
            while let Some(d) = sub.next().await {
                let d = d.map_err(|e| e.to_string())?;
                let seq = d.stamp.local_seq;
                out.push(StoredMessage {
                    seq,
                    id: d.id,
                    key: d.key,
                });
                if seq >= info.state.last_seq {
                    break;
                }
            }
        }
        client.close().await;
        Ok(out)
    };
    tokio::time::timeout(within, work)
        .await
        .map_err(|_| format!("draining {stream} took over {within:?}"))?
}
