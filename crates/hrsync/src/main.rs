//! `hrsync`: the one binary hosting every role of the pipeline and its admin
//! commands.

mod actions;
mod admin;
mod config;
mod demo;
mod hooks;
mod ingest;
mod projector;
mod provisioner;
mod roles;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Config;

/// jemalloc instead of the system allocator: glibc malloc/free took a third
/// of the projector's CPU samples; with jemalloc its threads use about a
/// fifth less CPU (docs/benchmarks.md). The C libraries (librdkafka,
/// SQLite) allocate from it too (the workspace enables jemalloc's unprefixed
/// `malloc`), so their buffers are returned to the system like the rest.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    /// Play the joiner → mover → leaver story end to end on this machine:
    /// a tansu broker, SQLite, two local SCIM apps and every role, with no
    /// configuration. Prints what HR said and what each app then holds.
    Demo(demo::DemoArgs),
    /// Run roles of the pipeline in this process until SIGTERM or Ctrl-C,
    /// with /metrics, /healthz and /readyz on telemetry.listen.
    Run {
        /// Which role, or all three.
        #[arg(long, value_enum, default_value = "all")]
        role: roles::Role,
    },
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Kafka topic commands.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// The ingest role: HR snapshots and pushed events become lifecycle
    /// events.
    #[command(subcommand)]
    Ingest(ingest::IngestCommand),
    /// The projector role: lifecycle events become profile state, groups,
    /// app assignments and directory changes.
    #[command(subcommand)]
    Projector(projector::ProjectorCommand),
    /// The provisioner role: directory changes become SCIM calls.
    #[command(subcommand)]
    Provisioner(provisioner::ProvisionerCommand),
    /// The hooks role: lifecycle events delivered to your endpoints, signed
    /// (Standard Webhooks).
    #[command(subcommand)]
    Hooks(hooks::HooksCommand),
    /// Apply one person's newest desired state to their apps now (each
    /// account read back first, so changes made in an app by hand are put
    /// right), printing each operation.
    ProvisionNow(provisioner::ProvisionNow),
    /// Inspect persons in the projector's store.
    #[command(subcommand)]
    User(projector::UserCommand),
    /// The Avro event contracts compiled into this binary.
    #[command(subcommand)]
    Schemas(SchemasCommand),
}

#[derive(Debug, Subcommand)]
enum SchemasCommand {
    /// Each contract's topic, record, fingerprint and released versions.
    List,
    /// Print one contract's current schema (JSON), e.g. for a direct producer.
    Show {
        /// Contract topic name: hr.lifecycle.v1, directory.changes.v1 or
        /// provisioning.audit.v1.
        topic: String,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Load and validate the configuration, then print it (secrets redacted);
    /// names it cannot confirm are warned about on stderr.
    Check,
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// Create every hrsync topic that does not exist yet.
    Ensure,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // These need no configuration.
    let command = match cli.command {
        Command::Schemas(command) => return schemas(&command),
        Command::Demo(args) => return demo::run(args),
        command => command,
    };
    let config: Config = hrsync_config::load(cli.config.as_deref())?;
    match command {
        Command::Config(ConfigCommand::Check) => {
            for warning in config.warnings() {
                eprintln!("warning: {warning}");
            }
            print!("{}", config.to_redacted_toml()?);
            Ok(())
        }
        Command::Topics(TopicsCommand::Ensure) => topics_ensure(&config),
        Command::Schemas(_) | Command::Demo(_) => unreachable!("handled above"),
        Command::Run { role } => run_roles(&config, role),
        Command::Projector(projector::ProjectorCommand::Run) => {
            run_roles(&config, roles::Role::Projector)
        }
        Command::Provisioner(provisioner::ProvisionerCommand::Run) => {
            run_roles(&config, roles::Role::Provisioner)
        }
        Command::Ingest(ingest::IngestCommand::Serve) => run_roles(&config, roles::Role::Ingest),
        Command::Hooks(hooks::HooksCommand::Run) => run_roles(&config, roles::Role::Hooks),
        Command::Hooks(command) => {
            let _telemetry = hrsync_telemetry::init(&config.telemetry)?;
            runtime()?.block_on(hooks::run_hooks(&config, command))
        }
        Command::Projector(command) => {
            let _telemetry = hrsync_telemetry::init(&config.telemetry)?;
            runtime()?.block_on(projector::run_projector(&config, command))
        }
        Command::Provisioner(command) => {
            let _telemetry = hrsync_telemetry::init(&config.telemetry)?;
            runtime()?.block_on(provisioner::run_provisioner(&config, command))
        }
        Command::ProvisionNow(args) => {
            let _telemetry = hrsync_telemetry::init(&config.telemetry)?;
            let code = runtime()?.block_on(provisioner::provision_now(&config, args))?;
            std::process::exit(code);
        }
        Command::User(command) => {
            let code = runtime()?.block_on(projector::run_user(&config, command))?;
            std::process::exit(code);
        }
        Command::Ingest(command) => {
            let _telemetry = hrsync_telemetry::init(&config.telemetry)?;
            let code = runtime()?.block_on(ingest::run(&config, command))?;
            std::process::exit(code);
        }
    }
}

/// `hrsync topics ensure`: creates the missing topics and prints each.
fn topics_ensure(config: &Config) -> anyhow::Result<()> {
    let _telemetry = hrsync_telemetry::init(&config.telemetry)?;
    runtime()?.block_on(async {
        let specs = config.topics.specs(&config.kafka);
        hrsync_bus::ensure_topics(&config.kafka, &specs)
            .await
            .context("creating topics")?;
        for spec in specs {
            let settings: Vec<String> = spec
                .configs
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            println!(
                "{} ({} partitions, {} if created)",
                spec.name,
                spec.partitions,
                settings.join(", ")
            );
        }
        // Existing lifecycle topics that let the broker remove
        // records are reported (and fail the command, as they
        // would stop the projector).
        hrsync_bus::check_lifecycle_retention(&config.kafka, &config.topics).await?;
        anyhow::Ok(())
    })
}

fn schemas(command: &SchemasCommand) -> anyhow::Result<()> {
    use hrsync_schema::Contract;
    match command {
        SchemasCommand::List => {
            for contract in Contract::ALL {
                let file = contract.schema_file();
                let versions: Vec<String> =
                    file.history.iter().map(|h| h.version.to_string()).collect();
                println!(
                    "{}\t{}\tschemas/{}\tfingerprint 0x{:016x}\tversions {}",
                    contract.topic(),
                    contract.record_name(),
                    file.name,
                    contract.fingerprint()?,
                    versions.join(",")
                );
            }
            Ok(())
        }
        SchemasCommand::Show { topic } => {
            let contract = Contract::ALL
                .into_iter()
                .find(|c| c.topic() == topic)
                .with_context(|| {
                    let known: Vec<&str> = Contract::ALL.iter().map(|c| c.topic()).collect();
                    format!("no contract named {topic:?}; known: {}", known.join(", "))
                })?;
            print!("{}", contract.schema_file().current);
            Ok(())
        }
    }
}

/// Runs `role` (or all) in this process until SIGTERM or Ctrl-C.
fn run_roles(config: &Config, role: roles::Role) -> anyhow::Result<()> {
    let telemetry = hrsync_telemetry::init(&config.telemetry)?;
    for warning in config.warnings() {
        tracing::warn!("configuration: {warning}");
    }
    runtime()?.block_on(roles::run(config, &telemetry, &[role]))
}

/// Connects to and migrates the store of a role, `<section>.database_url`.
pub(crate) async fn open_store(
    url: &hrsync_config::Secret,
    max_connections: u32,
    section: &str,
) -> anyhow::Result<hrsync_store::Db> {
    let url = url
        .expose()
        .with_context(|| format!("{section}.database_url"))?;
    let db = hrsync_store::Db::connect(&url, max_connections)
        .await
        .with_context(|| format!("connecting to the {section} store ({section}.database_url)"))?;
    db.migrate()
        .await
        .with_context(|| format!("migrating the {section} store"))?;
    Ok(db)
}

/// Creates every hrsync topic that does not exist yet (brokers may not
/// create them on their own).
pub(crate) async fn ensure_topics(config: &Config) -> anyhow::Result<()> {
    let specs = config.topics.specs(&config.kafka);
    hrsync_bus::ensure_topics(&config.kafka, &specs)
        .await
        .context("creating topics")
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

#[cfg(test)]
mod compose_tests {
    //! `docker-compose.yml` cannot be started here (no container engine), so
    //! these tests check what a typo would break: it parses, every reference
    //! resolves, and every hrsync command in it is one this binary accepts.

    use std::path::{Path, PathBuf};

    use clap::Parser;
    use serde_norway::Value;

    use super::Cli;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    fn compose() -> Value {
        let text = std::fs::read_to_string(repo().join("docker-compose.yml"))
            .expect("docker-compose.yml at the repository root");
        let mut value: Value = serde_norway::from_str(&text).expect("docker-compose.yml parses");
        value.apply_merge().expect("merge keys resolve");
        value
    }

    fn services(compose: &Value) -> &serde_norway::Mapping {
        compose["services"].as_mapping().expect("services mapping")
    }

    fn name(key: &Value) -> &str {
        key.as_str().expect("service names are strings")
    }

    #[test]
    fn every_reference_resolves() {
        let compose = compose();
        let services = services(&compose);
        assert!(services.contains_key("kafka") && services.contains_key("postgres"));
        let volumes = compose["volumes"].as_mapping().cloned().unwrap_or_default();
        for (key, service) in services {
            let service_name = name(key);
            assert!(
                service.get("image").is_some() || service.get("build").is_some(),
                "{service_name}: needs an image or a build"
            );
            if let Some(dockerfile) = service["build"]["dockerfile"].as_str() {
                assert!(
                    repo().join(dockerfile).is_file(),
                    "{service_name}: {dockerfile} missing"
                );
            }
            if let Some(depends) = service["depends_on"].as_mapping() {
                for (dependency, _) in depends {
                    assert!(
                        services.contains_key(dependency),
                        "{service_name}: depends on unknown service {dependency:?}"
                    );
                }
            }
            for mount in service["volumes"].as_sequence().into_iter().flatten() {
                let mount = mount.as_str().expect("short volume syntax");
                let source = mount.split(':').next().unwrap_or_default();
                if let Some(path) = source.strip_prefix("./") {
                    assert!(
                        repo().join(path).exists(),
                        "{service_name}: mounts missing {source}"
                    );
                } else {
                    assert!(
                        volumes.contains_key(source),
                        "{service_name}: volume {source} not declared"
                    );
                }
            }
        }
    }

    #[test]
    fn hrsync_commands_parse_and_reach_kafka() {
        let compose = compose();
        let mut hrsync_services = 0;
        for (key, service) in services(&compose) {
            if service["image"].as_str() != Some("hrsync:dev") {
                continue;
            }
            hrsync_services += 1;
            let args: Vec<&str> = service["command"]
                .as_sequence()
                .unwrap_or_else(|| panic!("{}: command as a list", name(key)))
                .iter()
                .map(|a| a.as_str().expect("string arguments"))
                .collect();
            if let Err(error) = Cli::try_parse_from(std::iter::once("hrsync").chain(args)) {
                panic!("{}: hrsync rejects its command: {error}", name(key));
            }
            assert_eq!(
                service["environment"]["HRSYNC_KAFKA__BROKERS"].as_str(),
                Some("kafka:9092"),
                "{}: brokers match Kafka's advertised listener",
                name(key)
            );
        }
        assert!(hrsync_services > 0, "compose runs hrsync");
        // The stack's services reach the listener advertised as kafka:9092
        // (the host has its own).
        let kafka = &services(&compose)["kafka"]["environment"];
        let advertised = kafka["KAFKA_ADVERTISED_LISTENERS"]
            .as_str()
            .unwrap_or_default();
        assert!(
            advertised.split(',').any(|l| l == "PLAINTEXT://kafka:9092"),
            "{advertised}"
        );
        assert_eq!(
            kafka["KAFKA_INTER_BROKER_LISTENER_NAME"].as_str(),
            Some("PLAINTEXT")
        );
    }
}
