use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use tern_client::Deploy;

use super::common::ClientArgs;

#[derive(Subcommand, Debug)]
pub enum PluginCmd {
    /// Deploy a WebAssembly component as a new version of a plugin (effective for the next
    /// message; earlier versions are kept for rollback).
    Deploy(DeployArgs),
    /// List plugins with their versions, attachments and counters.
    Ls(ClientArgs),
    /// Make the version before the active one active again.
    Rollback {
        name: String,
        /// Who rolls back, for the audit trail (default: $USER).
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a plugin, its versions, attachments and key-value entries.
    Rm {
        name: String,
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Attach a deployed plugin to a stream (end of the chain of its hook).
    Attach {
        name: String,
        #[arg(long)]
        stream: String,
        /// On failure: `reject`, `allow` or `skip` (default: the hook's).
        #[arg(long)]
        fallback: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Detach a plugin from a stream.
    Detach {
        name: String,
        #[arg(long)]
        stream: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show who deployed, rolled back or removed which plugin, and when.
    Audit(ClientArgs),
}

#[derive(Args, Debug)]
pub struct DeployArgs {
    /// The component (`.wasm`).
    file: PathBuf,
    /// Plugin name (`[a-z0-9_-]`); deploying an existing name adds a version.
    #[arg(long)]
    name: String,
    /// `dedup-key`, `route`, `residency` or `resolve` (default: read from the component).
    #[arg(long)]
    hook: Option<String>,
    /// Attach to this stream's chain for the hook.
    #[arg(long)]
    stream: Option<String>,
    /// Fallback of that attachment: `reject`, `allow` or `skip`.
    #[arg(long, requires = "stream")]
    fallback: Option<String>,
    /// A parameter the plugin reads, `key=value` (repeatable).
    #[arg(long = "param", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// Who deploys, for the audit trail (default: $USER).
    #[arg(long)]
    by: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .ok_or_else(|| format!("parameter {s:?} must be key=value"))
}

fn who(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into())
}

pub async fn run(cmd: PluginCmd) -> anyhow::Result<()> {
    match cmd {
        PluginCmd::Deploy(a) => {
            let component =
                std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
            let client = a.client.connect().await?;
            let version = client
                .deploy_plugin(Deploy {
                    name: a.name.clone(),
                    hook: a.hook,
                    by: who(a.by),
                    params: a.params,
                    stream: a.stream.clone(),
                    fallback: a.fallback,
                    component: component.into(),
                })
                .await?;
            if a.client.json {
                println!(
                    "{}",
                    serde_json::json!({ "name": a.name, "version": version, "stream": a.stream })
                );
            } else {
                match a.stream {
                    Some(s) => println!("deployed {} v{version}, attached to {s}", a.name),
                    None => println!("deployed {} v{version}", a.name),
                }
            }
            client.close().await;
        }
        PluginCmd::Ls(c) => {
            let client = c.connect().await?;
            let json = client.list_plugins().await?;
            client.close().await;
            if c.json {
                println!("{json}");
                return Ok(());
            }
            let doc: serde_json::Value =
                serde_json::from_str(&json).context("the node's plugin list is not JSON")?;
            println!(
                "{:<20} {:<10} {:>6} {:<12} {:<24} {:>10} {:>9}",
                "PLUGIN", "HOOK", "ACTIVE", "VERSIONS", "STREAMS", "CALLS", "FAILURES"
            );
            for p in doc["plugins"].as_array().into_iter().flatten() {
                let versions: Vec<String> = p["versions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v["version"].as_u64().map(|v| v.to_string()))
                    .collect();
                let streams: Vec<&str> = p["streams"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str())
                    .collect();
                let failures: u64 = p["metrics"]["failures"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(_, v)| v.as_u64())
                    .sum();
                println!(
                    "{:<20} {:<10} {:>6} {:<12} {:<24} {:>10} {:>9}",
                    p["name"].as_str().unwrap_or("?"),
                    p["hook"].as_str().unwrap_or("?"),
                    format!("v{}", p["active"]),
                    versions.join(","),
                    if streams.is_empty() {
                        "-".to_string()
                    } else {
                        streams.join(",")
                    },
                    p["metrics"]["calls"],
                    failures
                );
                if let Some(why) = p["load_error"].as_str() {
                    println!("  NOT LOADED on this node (calls fail, fallbacks apply): {why}");
                }
            }
        }
        PluginCmd::Audit(c) => {
            let client = c.connect().await?;
            let json = client.list_plugins().await?;
            client.close().await;
            let doc: serde_json::Value =
                serde_json::from_str(&json).context("the node's plugin list is not JSON")?;
            for e in doc["audit"].as_array().into_iter().flatten() {
                if c.json {
                    println!("{e}");
                    continue;
                }
                let at = e["at_ms"].as_u64().unwrap_or(0);
                let at = humantime::format_rfc3339_millis(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(at),
                );
                let what = match e["action"].as_str() {
                    Some("deploy") => format!("deployed v{} ({})", e["version"], e["digest"]),
                    Some("rollback") => format!(
                        "rolled back v{} -> v{} ({})",
                        e["from"], e["to"], e["digest"]
                    ),
                    Some("remove") => "removed".to_string(),
                    _ => e["action"].to_string(),
                };
                println!(
                    "{at}  {:<16} {:<20} {what}",
                    e["by"].as_str().unwrap_or(""),
                    e["plugin"].as_str().unwrap_or("")
                );
            }
        }
        PluginCmd::Rollback {
            name,
            by,
            client: c,
        } => {
            let client = c.connect().await?;
            let version = client.rollback_plugin(&name, &who(by)).await?;
            client.close().await;
            if c.json {
                println!(
                    "{}",
                    serde_json::json!({ "name": name, "version": version })
                );
            } else {
                println!("{name} rolled back to v{version}");
            }
        }
        PluginCmd::Rm {
            name,
            by,
            client: c,
        } => {
            let client = c.connect().await?;
            client.remove_plugin(&name, &who(by)).await?;
            client.close().await;
            if c.json {
                println!("{}", serde_json::json!({ "removed": name }));
            } else {
                println!("removed plugin {name}");
            }
        }
        PluginCmd::Attach {
            name,
            stream,
            fallback,
            client: c,
        } => {
            let client = c.connect().await?;
            client
                .attach_plugin(&stream, &name, fallback.as_deref())
                .await?;
            client.close().await;
            if c.json {
                println!(
                    "{}",
                    serde_json::json!({ "attached": name, "stream": stream })
                );
            } else {
                println!("attached {name} to {stream}");
            }
        }
        PluginCmd::Detach {
            name,
            stream,
            client: c,
        } => {
            let client = c.connect().await?;
            client.detach_plugin(&stream, &name).await?;
            client.close().await;
            if c.json {
                println!(
                    "{}",
                    serde_json::json!({ "detached": name, "stream": stream })
                );
            } else {
                println!("detached {name} from {stream}");
            }
        }
    }
    Ok(())
}
