//! `hrsync`: the one binary hosting every role of the pipeline and its admin
//! commands.

mod config;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Config;

/// HR-driven identity lifecycle sync: HR events in, SCIM accounts out.
#[derive(Debug, Parser)]
#[command(name = "hrsync", version, about)]
struct Cli {
    /// TOML configuration file (see deploy/config/hrsync.example.toml).
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Kafka topic commands.
    #[command(subcommand)]
    Topics(TopicsCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Load and validate the configuration, then print it (secrets redacted).
    Check,
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// Create every hrsync topic that does not exist yet.
    Ensure,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config: Config = hrsync_config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Config(ConfigCommand::Check) => {
            print!("{}", config.to_redacted_toml()?);
            Ok(())
        }
        Command::Topics(TopicsCommand::Ensure) => {
            let _telemetry = hrsync_telemetry::init(&config.telemetry)?;
            runtime()?.block_on(async {
                let specs = config.topics.specs(&config.kafka);
                hrsync_bus::ensure_topics(&config.kafka, &specs)
                    .await
                    .context("creating topics")?;
                for spec in specs {
                    println!("{} ({} partitions if created)", spec.name, spec.partitions);
                }
                anyhow::Ok(())
            })
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
