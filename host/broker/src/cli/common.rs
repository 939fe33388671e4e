//! What every client command shares: where the node is, which CA to trust, output format.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use tern_client::{AckLevel, Client, ClientConfig};

#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Node addresses, comma-separated; tried in order.
    #[arg(
        long,
        env = "TERN_SERVER",
        default_value = "127.0.0.1:7420",
        value_delimiter = ','
    )]
    pub server: Vec<String>,
    /// CA certificate (PEM) to trust. Default: the development CA of a local default node,
    /// `$TERN_DATA/ca.pem` or `./tern-data/ca.pem`.
    #[arg(long, env = "TERN_CA")]
    pub ca: Option<PathBuf>,
    /// TLS server name to verify.
    #[arg(long, default_value = "localhost")]
    pub server_name: String,
    /// Machine-readable output: one JSON object per line.
    #[arg(long)]
    pub json: bool,
}

impl ClientArgs {
    fn ca_path(&self) -> anyhow::Result<PathBuf> {
        if let Some(ca) = &self.ca {
            return Ok(ca.clone());
        }
        let data = std::env::var_os("TERN_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("tern-data"));
        let ca = data.join("ca.pem");
        if ca.exists() {
            return Ok(ca);
        }
        bail!(
            "no CA to trust: pass --ca FILE (or TERN_CA); a local default node writes its \
             development CA to {}",
            ca.display()
        )
    }

    pub fn config(&self) -> anyhow::Result<ClientConfig> {
        let mut c = ClientConfig::new(self.server.clone(), self.ca_path()?);
        c.server_name = self.server_name.clone();
        c.client_name = "tern-cli".into();
        Ok(c)
    }

    pub async fn connect(&self) -> anyhow::Result<Client> {
        let cfg = self.config()?;
        Client::connect(cfg)
            .await
            .with_context(|| format!("connecting to {}", self.server.join(",")))
    }

    /// Fetches a status document with `fetch` and prints it: as it came with `--json`,
    /// otherwise parsed as `T` and rendered by `render` (`what` names it in errors).
    pub async fn show_status<T, F>(
        &self,
        what: &str,
        fetch: impl FnOnce(Client) -> F,
        render: impl FnOnce(&T) -> String,
    ) -> anyhow::Result<()>
    where
        T: serde::de::DeserializeOwned,
        F: std::future::Future<Output = Result<String, tern_client::ClientError>>,
    {
        let client = self.connect().await?;
        let json = fetch(client.clone()).await;
        client.close().await;
        let json = json?;
        if self.json {
            println!("{json}");
            return Ok(());
        }
        let status: T = serde_json::from_str(&json)
            .with_context(|| format!("the node's {what} is not valid"))?;
        print!("{}", render(&status));
        Ok(())
    }
}

/// Parse a duration such as `30s`, `15m`, `24h`, `7d` into milliseconds.
/// Durability a publish waits for (`--ack`).
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Ack {
    /// Durable on the node that stored it (in a region: committed by the region).
    Local,
    /// Committed on a majority of the region.
    Quorum,
    /// In a region: in the leader's log only, before the commit; no position yet.
    Leader,
}

impl Ack {
    pub fn level(self) -> AckLevel {
        match self {
            Ack::Local => AckLevel::Local,
            Ack::Quorum => AckLevel::Quorum,
            Ack::Leader => AckLevel::Leader,
        }
    }
}

pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    humantime::parse_duration(s)
        .map(|d| d.as_millis() as u64)
        .map_err(|e| format!("{s:?}: {e}"))
}

/// Parse a `k=v` header.
pub fn parse_header(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("header {s:?} must be name=value"))
}

/// Payload as JSON: a string when it is UTF-8, otherwise an array of bytes.
pub fn payload_json(p: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(p) {
        Ok(s) => serde_json::Value::String(s.to_owned()),
        Err(_) => serde_json::Value::Array(p.iter().map(|b| (*b).into()).collect()),
    }
}

pub fn headers_json(h: &[(String, String)]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (k, v) in h {
        m.insert(k.clone(), serde_json::Value::String(v.clone()));
    }
    serde_json::Value::Object(m)
}
