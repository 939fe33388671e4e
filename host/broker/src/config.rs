//! Node configuration: a TOML file (every key optional, unknown keys refused) whose
//! defaults make `tern serve` work with no file at all. examples/tern.toml lists every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys or wrong types.
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// UDP address the QUIC endpoint binds.
    pub listen: SocketAddr,
    /// Directory for the redb file and the development certificates.
    pub data_dir: PathBuf,
    /// Name of this node, reported to clients.
    pub node_name: String,
    /// Region this node belongs to; stamped as `origin` on messages it accepts.
    pub region: String,
    /// Tags of this region (e.g. `eu`, `pci`), which residency policies match on.
    pub region_tags: Vec<String>,
    pub tls: TlsConfig,
    pub limits: LimitsConfig,
    pub storage: StorageConfig,
    pub consumer: ConsumerConfig,
    pub shutdown: ShutdownConfig,
    pub plugins: PluginsConfig,
    pub cluster: ClusterConfig,
    pub mesh: MeshConfig,
}

/// Links to other regions: this node copies streams from each (see `crate::mesh`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MeshConfig {
    pub links: Vec<LinkConfig>,
    /// Most messages a link stores in one commit; also its credit with the sender.
    pub batch_msgs_max: u32,
    /// Reconnect backoff of a link: full jitter, doubling from the initial cap to the max.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            links: Vec::new(),
            batch_msgs_max: 1024,
            backoff_initial_ms: 100,
            backoff_max_ms: 5_000,
        }
    }
}

/// Another region of the mesh: its tags, and the streams this node copies from it. Only
/// the regions listed here may copy streams from this node.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    /// The other region's name.
    pub region: String,
    /// Its tags, which residency policies match on.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Client addresses (`host:port`) of its nodes; any of them serves the link. Needed
    /// only to copy streams from it.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// CA certificate (PEM) its nodes' certificates chain to. Needed only to copy streams.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Streams copied from it, by name (the same names in both regions); none when the
    /// region only copies from this one.
    #[serde(default)]
    pub streams: Vec<String>,
}

/// Membership of a replicated region (`node_id = 0`: the node runs on its own).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This node's id in its region, 1 or more; 0 runs the node on its own, with no log.
    pub node_id: u64,
    /// UDP address of this node's region endpoint (node-to-node traffic, mutual TLS).
    pub listen: SocketAddr,
    /// Every member of the region, this node included: `ID=REGION_ADDR/CLIENT_ADDR`.
    pub peers: Vec<String>,
    /// Directory of the development region CA (`region-ca.pem`), shared by every node of
    /// the region; `<data_dir>/region-ca` when unset.
    pub ca_dir: Option<PathBuf>,
    /// Leader heartbeat interval.
    pub heartbeat_ms: u64,
    /// Election timeout range: each node's timeout is a fixed point of it chosen by its id
    /// (see `tern_region::RegionConfig::election_timeout_ms_for`); a new leader follows
    /// about twice the fastest live follower's timeout after the old one died.
    pub election_timeout_ms_min: u64,
    pub election_timeout_ms_max: u64,
    /// Snapshot the store once the log since the last snapshot holds this many bytes; the
    /// log behind a snapshot is purged. A snapshot is a durable commit of the store; the
    /// store is written out only to be sent to a member that needs it.
    pub snapshot_log_bytes: u64,
    /// Log entries kept behind the last snapshot, so a member that was briefly away
    /// catches up from the log instead of a whole snapshot.
    pub snapshot_keep_entries: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        let raft = tern_region::RegionConfig::default();
        ClusterConfig {
            node_id: 0,
            listen: SocketAddr::from(([127, 0, 0, 1], 7430)),
            peers: Vec::new(),
            ca_dir: None,
            heartbeat_ms: raft.heartbeat_ms,
            election_timeout_ms_min: raft.election_timeout_ms_min,
            election_timeout_ms_max: raft.election_timeout_ms_max,
            snapshot_log_bytes: raft.snapshot_log_bytes,
            snapshot_keep_entries: raft.logs_kept_after_snapshot,
        }
    }
}

/// One member from `cluster.peers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: u64,
    pub region_addr: String,
    pub client_addr: String,
}

impl std::str::FromStr for Peer {
    type Err = ConfigError;

    /// `ID=REGION_ADDR/CLIENT_ADDR`, e.g. `2=127.0.0.1:7432/127.0.0.1:7422`.
    fn from_str(s: &str) -> Result<Peer, ConfigError> {
        let bad = || {
            ConfigError::Invalid(format!(
                "cluster peer {s:?}: expected ID=REGION_ADDR/CLIENT_ADDR, e.g. 2=127.0.0.1:7432/127.0.0.1:7422"
            ))
        };
        let (id, addrs) = s.split_once('=').ok_or_else(bad)?;
        let (region_addr, client_addr) = addrs.split_once('/').ok_or_else(bad)?;
        let id: u64 = id.trim().parse().map_err(|_| bad())?;
        if id == 0 || region_addr.is_empty() || client_addr.is_empty() {
            return Err(bad());
        }
        Ok(Peer {
            id,
            region_addr: region_addr.trim().to_owned(),
            client_addr: client_addr.trim().to_owned(),
        })
    }
}

impl ClusterConfig {
    /// The parsed members (empty when the node runs on its own).
    pub fn members(&self) -> Result<Vec<Peer>, ConfigError> {
        self.peers.iter().map(|p| p.parse()).collect()
    }

    /// The Raft settings these values make.
    pub fn raft(&self, region: &str) -> tern_region::RegionConfig {
        tern_region::RegionConfig {
            cluster_name: region.to_owned(),
            heartbeat_ms: self.heartbeat_ms,
            election_timeout_ms_min: self.election_timeout_ms_min,
            election_timeout_ms_max: self.election_timeout_ms_max,
            snapshot_log_bytes: self.snapshot_log_bytes,
            logs_kept_after_snapshot: self.snapshot_keep_entries,
            ..tern_region::RegionConfig::default()
        }
    }

    fn validate(&self, region: &str) -> Result<(), ConfigError> {
        let members = self.members()?;
        if self.node_id == 0 {
            return Ok(());
        }
        let mut ids: Vec<u64> = members.iter().map(|p| p.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != members.len() {
            return Err(ConfigError::Invalid("cluster.peers repeats an id".into()));
        }
        if !ids.contains(&self.node_id) {
            return Err(ConfigError::Invalid(format!(
                "cluster.peers must list this node (id {})",
                self.node_id
            )));
        }
        self.raft(region)
            .to_openraft(self.node_id)
            .map_err(|e| ConfigError::Invalid(format!("cluster: {e}")))?;
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Wall-clock deadline of one plugin call (one batch), in ms.
    pub call_deadline_ms: u64,
    /// Linear memory one plugin instance may grow to.
    pub memory_bytes_max: usize,
    /// Keys + values one plugin may keep in its key-value store.
    pub kv_quota_bytes: u64,
    /// Where compiled plugins are cached; `<data_dir>/plugin-cache` when unset.
    pub cache_dir: Option<PathBuf>,
    /// Write `/tmp/perf-<pid>.map` so that `perf` names plugins' functions.
    pub perf_map: bool,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            call_deadline_ms: tern_plugin::limits::CALL_DEADLINE_MS,
            memory_bytes_max: tern_plugin::limits::MEMORY_BYTES_MAX,
            kv_quota_bytes: tern_plugin::limits::KV_QUOTA_BYTES,
            cache_dir: None,
            perf_map: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain; unset means a development certificate in `data_dir`.
    pub cert: Option<PathBuf>,
    /// PEM private key for `cert`.
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub connections_max: usize,
    pub streams_per_connection_max: u32,
    pub frame_bytes_max: usize,
    pub message_bytes_max: usize,
    /// Requests of one QUIC stream awaiting their commit before the node stops reading it.
    pub inflight_per_stream_max: usize,
    pub idle_timeout_ms: u32,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub commit_msgs_max: usize,
    pub queue_ops_max: usize,
    pub cache_bytes: usize,
    pub dedup_window_ms: u64,
    pub purge_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    pub ack_wait_ms: u32,
    pub max_deliveries: u32,
    /// Most unacknowledged credit a subscription may hold.
    pub credit_max: u32,
    /// Most messages read from storage at once for one subscription.
    pub read_batch_msgs: usize,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// How long in-flight work may take to finish after SIGINT/SIGTERM.
    pub timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7420)),
            data_dir: PathBuf::from("tern-data"),
            node_name: "tern-1".into(),
            region: "local".into(),
            region_tags: Vec::new(),
            tls: TlsConfig::default(),
            limits: LimitsConfig::default(),
            storage: StorageConfig::default(),
            consumer: ConsumerConfig::default(),
            shutdown: ShutdownConfig::default(),
            plugins: PluginsConfig::default(),
            cluster: ClusterConfig::default(),
            mesh: MeshConfig::default(),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            connections_max: 1024,
            streams_per_connection_max: 64,
            frame_bytes_max: tern_proto::limits::FRAME_BYTES_MAX,
            message_bytes_max: 1024 * 1024,
            inflight_per_stream_max: 4096,
            idle_timeout_ms: 30_000,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            commit_msgs_max: 8192,
            queue_ops_max: 4096,
            cache_bytes: tern_store::CACHE_BYTES_DEFAULT,
            dedup_window_ms: 24 * 3600 * 1000,
            purge_interval_ms: 1000,
        }
    }
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            ack_wait_ms: 30_000,
            max_deliveries: 5,
            credit_max: 10_000,
            read_batch_msgs: 1024,
        }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { timeout_ms: 10_000 }
    }
}

impl Config {
    /// Load a TOML file; keys it leaves out take their defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(e),
        })?;
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        if l.message_bytes_max + 64 * 1024 > l.frame_bytes_max {
            return Err(ConfigError::Invalid(
                "limits.frame_bytes_max must exceed limits.message_bytes_max by 64 KiB".into(),
            ));
        }
        if l.frame_bytes_max > tern_proto::limits::FRAME_BYTES_MAX {
            return Err(ConfigError::Invalid(format!(
                "limits.frame_bytes_max may be at most {}",
                tern_proto::limits::FRAME_BYTES_MAX
            )));
        }
        if l.connections_max == 0 || l.inflight_per_stream_max == 0 {
            return Err(ConfigError::Invalid("limits must be positive".into()));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(ConfigError::Invalid(
                "tls.cert and tls.key go together".into(),
            ));
        }
        if self.consumer.credit_max == 0 || self.consumer.read_batch_msgs == 0 {
            return Err(ConfigError::Invalid(
                "consumer limits must be positive".into(),
            ));
        }
        if self.storage.commit_msgs_max == 0 || self.storage.queue_ops_max == 0 {
            return Err(ConfigError::Invalid(
                "storage limits must be positive".into(),
            ));
        }
        tern_proto::subject::validate_name("region", &self.region)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        for tag in &self.region_tags {
            tern_proto::subject::validate_name("region tag", tag)
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        self.cluster.validate(&self.region)?;
        self.mesh.validate(&self.region)?;
        let p = &self.plugins;
        if p.call_deadline_ms == 0 || p.memory_bytes_max < 1024 * 1024 {
            return Err(ConfigError::Invalid(
                "plugins.call_deadline_ms must be positive and plugins.memory_bytes_max at least 1 MiB"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl MeshConfig {
    fn validate(&self, region: &str) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(format!("mesh: {m}")));
        if self.batch_msgs_max == 0 || self.backoff_max_ms == 0 {
            return bad("batch_msgs_max and backoff_max_ms must be positive".into());
        }
        for (i, l) in self.links.iter().enumerate() {
            tern_proto::subject::validate_name("region", &l.region)
                .map_err(|e| ConfigError::Invalid(format!("mesh.links[{i}]: {e}")))?;
            if l.region == region {
                return bad(format!(
                    "links[{i}] names this node's own region `{region}`"
                ));
            }
            if self.links[..i].iter().any(|o| o.region == l.region) {
                return bad(format!("region `{}` is linked twice", l.region));
            }
            if !l.streams.is_empty() && (l.nodes.is_empty() || l.ca.is_none()) {
                return bad(format!(
                    "links[{i}] copies streams: it needs `nodes` and `ca`"
                ));
            }
            for s in &l.streams {
                tern_proto::subject::validate_name("stream", s)
                    .map_err(|e| ConfigError::Invalid(format!("mesh.links[{i}]: {e}")))?;
            }
            for t in &l.tags {
                tern_proto::subject::validate_name("region tag", t)
                    .map_err(|e| ConfigError::Invalid(format!("mesh.links[{i}]: {e}")))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_is_the_defaults() {
        let text = include_str!("../../../examples/tern.toml");
        let c = Config::parse(text, Path::new("tern.toml")).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = Config::parse(
            "listen = \"127.0.0.1:1\"\nlisten_addr = 1\n",
            Path::new("x"),
        );
        assert!(matches!(e, Err(ConfigError::Parse { .. })), "{e:?}");
        let e = Config::parse("[limits]\nconnection_max = 1\n", Path::new("x"));
        assert!(matches!(e, Err(ConfigError::Parse { .. })), "{e:?}");
    }

    #[test]
    fn cluster_peers_parse_and_must_include_this_node() {
        let ok = Config::parse(
            "[cluster]\nnode_id = 2\npeers = [\"1=127.0.0.1:7431/127.0.0.1:7421\", \"2=127.0.0.1:7432/127.0.0.1:7422\"]\n",
            Path::new("x"),
        )
        .unwrap();
        let m = ok.cluster.members().unwrap();
        assert_eq!(
            m[1],
            Peer {
                id: 2,
                region_addr: "127.0.0.1:7432".into(),
                client_addr: "127.0.0.1:7422".into()
            }
        );
        for bad in [
            "[cluster]\nnode_id = 3\npeers = [\"1=a:1/b:1\"]\n",
            "[cluster]\nnode_id = 1\npeers = [\"1=a:1\"]\n",
            "[cluster]\nnode_id = 1\npeers = [\"1=a:1/b:1\", \"1=c:1/d:1\"]\n",
            "[cluster]\nnode_id = 1\npeers = [\"1=a:1/b:1\"]\nheartbeat_ms = 5000\n",
        ] {
            let e = Config::parse(bad, Path::new("x"));
            assert!(matches!(e, Err(ConfigError::Invalid(_))), "{bad}: {e:?}");
        }
    }

    #[test]
    fn mesh_links_parse_and_are_checked() {
        let link = "[[mesh.links]]\nregion = \"us\"\ntags = [\"us\"]\nnodes = [\"127.0.0.1:7520\"]\nca = \"us/ca.pem\"\nstreams = [\"orders\"]\n";
        let ok = Config::parse(&format!("region = \"eu\"\n{link}"), Path::new("x")).unwrap();
        assert_eq!(ok.mesh.links[0].region, "us");
        assert_eq!(ok.mesh.links[0].streams, vec!["orders".to_string()]);
        for bad in [
            format!("region = \"us\"\n{link}"),
            format!("region = \"eu\"\n{link}{link}"),
            format!(
                "region = \"eu\"\n{}",
                link.replace("[\"127.0.0.1:7520\"]", "[]")
            ),
            format!(
                "region = \"eu\"\n{}",
                link.replace("\"us\"\ntags", "\"u s\"\ntags")
            ),
        ] {
            let e = Config::parse(&bad, Path::new("x"));
            assert!(matches!(e, Err(ConfigError::Invalid(_))), "{bad}: {e:?}");
        }
    }

    #[test]
    fn mesh_examples_link_each_other() {
        let eu = include_str!("../../../examples/mesh/eu-west.toml");
        let us = include_str!("../../../examples/mesh/us-east.toml");
        let eu = Config::parse(eu, Path::new("eu-west.toml")).unwrap();
        let us = Config::parse(us, Path::new("us-east.toml")).unwrap();
        assert_eq!(eu.mesh.links[0].region, us.region);
        assert_eq!(us.mesh.links[0].region, eu.region);
        assert_eq!(eu.mesh.links[0].nodes, vec![us.listen.to_string()]);
        assert_eq!(us.mesh.links[0].nodes, vec![eu.listen.to_string()]);
        assert_eq!(eu.mesh.links[0].tags, us.region_tags);
        assert_eq!(us.mesh.links[0].tags, eu.region_tags);
    }

    #[test]
    fn out_of_range_values_are_errors() {
        let e = Config::parse("[limits]\nmessage_bytes_max = 20000000\n", Path::new("x"));
        assert!(matches!(e, Err(ConfigError::Invalid(_))), "{e:?}");
    }
}
