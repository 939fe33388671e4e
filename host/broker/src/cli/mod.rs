//! Command-line interface.

mod bench;
mod common;
mod mesh;
mod plugin;
mod publish;
mod region;
mod serve;
mod stream;
mod subscribe;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "tern",
    version,
    about = "tern: a WebAssembly-extensible edge message broker"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a node.
    Serve(serve::ServeArgs),
    /// Manage streams.
    #[command(subcommand)]
    Stream(stream::StreamCmd),
    /// Publish messages.
    Pub(publish::PubArgs),
    /// Subscribe to a subject (ephemeral or as a consumer group member).
    Sub(subscribe::SubArgs),
    /// Deploy, list, roll back and attach WebAssembly policy plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCmd),
    /// Show a region's members and leader; add or remove a node.
    #[command(subcommand)]
    Region(region::RegionCmd),
    /// Show how this node's links to other regions stand.
    #[command(subcommand)]
    Mesh(mesh::MeshCmd),
    /// Measure publish and consume throughput and latency.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
}

impl Cli {
    /// Log filter when RUST_LOG is unset: the server logs at info, client commands only warnings.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Command::Serve(_) => "info",
            _ => "warn",
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(a) => serve::run(a).await,
        Command::Stream(c) => stream::run(c).await,
        Command::Pub(a) => publish::run(a).await,
        Command::Sub(a) => subscribe::run(a).await,
        Command::Plugin(c) => plugin::run(c).await,
        Command::Region(c) => region::run(c).await,
        Command::Mesh(c) => mesh::run(c).await,
        Command::Bench(c) => bench::run(c).await,
    }
}
