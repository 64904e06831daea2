//! The deployment files, checked without a container engine or a cluster:
//! `docker-compose.yml` and what it mounts from `deploy/` (the collector,
//! Tempo, Prometheus and Grafana configs, the dashboards) and the Kubernetes
//! manifests in `deploy/k8s/`.
//!
//! Every mounted path exists and parses; every hrsync configuration loads
//! through the real loader (`hrsync config check`) with the environment its
//! service or pod gives it, and then finds its secrets, Kafka, database,
//! collector, SCIM apps and scrape targets where the other files put them;
//! every dashboard queries only metrics the code exports (names scanned from
//! `crates/*/src`, the way the Prometheus exporter renders them); the
//! Kubernetes probes hit `/healthz` and `/readyz` on `telemetry.listen`.

mod alerts;
mod k8s;
mod metrics;
mod promql;
mod storage;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::Url;
use serde::Deserialize;
use serde_json::Value as Json;
use serde_norway::Value as Yaml;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn yaml(path: &Path) -> Yaml {
    let mut value: Yaml = serde_norway::from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    value
        .apply_merge()
        .unwrap_or_else(|e| panic!("{}: merge keys: {e}", path.display()));
    value
}

fn yaml_documents(path: &Path) -> Vec<Yaml> {
    let text = read(path);
    serde_norway::Deserializer::from_str(&text)
        .map(|document| {
            Yaml::deserialize(document)
                .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
        })
        .filter(|document| !document.is_null())
        .collect()
}

fn json(path: &Path) -> Json {
    serde_json::from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Parses a file by its extension; files of other kinds (token examples)
/// are only required to exist.
fn parse_by_extension(path: &Path) {
    match path.extension().and_then(|e| e.to_str()) {
        Some("yml" | "yaml") => {
            yaml_documents(path);
        }
        Some("json") => {
            json(path);
        }
        Some("toml") => {
            toml::from_str::<toml::Table>(&read(path))
                .unwrap_or_else(|e| panic!("{} is not TOML: {e}", path.display()));
        }
        _ => {}
    }
}

/// Every file at or under `path`.
fn files_under(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
        files.extend(files_under(&entry.expect("directory entry").path()));
    }
    files.sort();
    files
}

fn str_of<'a>(value: &'a Yaml, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, found {value:?}"))
}

fn strings(value: &Yaml, what: &str) -> Vec<String> {
    value
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|v| str_of(v, what).to_owned())
        .collect()
}

fn port_of(address: &str) -> u16 {
    address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{address:?} has no port"))
}

/// `host:port` pairs of a comma-separated list.
fn host_ports(list: &str) -> Vec<(String, u16)> {
    list.split(',')
        .map(|address| {
            let (host, port) = address
                .trim()
                .rsplit_once(':')
                .unwrap_or_else(|| panic!("{address:?} is not host:port"));
            (
                host.to_owned(),
                port.parse()
                    .unwrap_or_else(|_| panic!("{address:?}: bad port")),
            )
        })
        .collect()
}

/// The effective configuration `hrsync config check` prints for `config`
/// with `env` as the only `HRSYNC_*` variables: the real loader, defaults,
/// file and environment layers, and the cross-field checks.
fn config_check(config: &Path, env: &BTreeMap<String, String>) -> toml::Table {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hrsync"));
    for (key, _) in std::env::vars() {
        if key.starts_with("HRSYNC_") {
            command.env_remove(key);
        }
    }
    let output = command
        .arg("--config")
        .arg(config)
        .args(["config", "check"])
        .envs(env)
        .output()
        .expect("running hrsync config check");
    assert!(
        output.status.success(),
        "hrsync config check rejects {} with {env:?}:\n{}",
        config.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    toml::from_str(&String::from_utf8_lossy(&output.stdout)).expect("config check prints TOML")
}

/// `text` with its commented-out sections in force: each `# [section]`
/// line and the comment lines right after it lose their `#`, as an
/// operator enabling an optional role would do.
fn with_commented_sections(text: &str) -> String {
    let mut enabled = String::new();
    let mut in_section = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("# [") {
            in_section = true;
        } else if !trimmed.starts_with('#') {
            in_section = false;
        }
        if in_section {
            enabled.push_str(trimmed.trim_start_matches('#').trim_start());
        } else {
            enabled.push_str(line);
        }
        enabled.push('\n');
    }
    enabled
}

/// Whether hrsync accepts `args` as a command line (its `--help` exits 0
/// only for a valid subcommand path).
fn hrsync_accepts(args: &[String]) -> bool {
    Command::new(env!("CARGO_BIN_EXE_hrsync"))
        .args(args)
        .arg("--help")
        .output()
        .expect("running hrsync --help")
        .status
        .success()
}

fn value_at<'a>(table: &'a toml::Table, path: &str) -> Option<&'a toml::Value> {
    let mut parts = path.split('.');
    let mut value = table.get(parts.next()?)?;
    for part in parts {
        value = value.get(part)?;
    }
    Some(value)
}

fn str_at<'a>(table: &'a toml::Table, path: &str) -> &'a str {
    value_at(table, path)
        .and_then(toml::Value::as_str)
        .unwrap_or_else(|| panic!("effective config has no string {path}"))
}

/// Where a secret of the effective config comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum SecretRef {
    Env(String),
    File(String),
}

/// The env and file secrets under `sections` of an effective config
/// (`config check` prints a secret as `{ env = .. }` or `{ file = .. }`).
fn secret_refs(config: &toml::Table, sections: &[&str]) -> BTreeSet<SecretRef> {
    fn walk(value: &toml::Value, found: &mut BTreeSet<SecretRef>) {
        match value {
            toml::Value::Table(table) if table.len() == 1 => {
                match (table.get("env"), table.get("file")) {
                    (Some(toml::Value::String(var)), _) => {
                        found.insert(SecretRef::Env(var.clone()));
                    }
                    (_, Some(toml::Value::String(path))) => {
                        found.insert(SecretRef::File(path.clone()));
                    }
                    _ => table.values().for_each(|v| walk(v, found)),
                }
            }
            toml::Value::Table(table) => table.values().for_each(|v| walk(v, found)),
            toml::Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    let mut found = BTreeSet::new();
    for section in sections {
        if let Some(value) = value_at(config, section) {
            walk(value, &mut found);
        }
    }
    found
}

/// An hrsync role as a command line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Topics,
    Ingest,
    Projector,
    Provisioner,
    Admin,
    Hooks,
}

impl Role {
    /// The role of an hrsync command line (`--config FILE` first).
    fn of(args: &[String]) -> Role {
        let words: Vec<&str> = args
            .iter()
            .map(String::as_str)
            .filter(|a| !a.starts_with('-') && !a.starts_with('/'))
            .collect();
        match words.as_slice() {
            ["topics", "ensure"] => Role::Topics,
            ["ingest", "serve"] => Role::Ingest,
            ["projector", "run"] => Role::Projector,
            ["provisioner", "run"] => Role::Provisioner,
            ["run", "admin"] => Role::Admin,
            ["run", "hooks"] => Role::Hooks,
            other => panic!("not a deployed hrsync role: {other:?}"),
        }
    }

    /// Config sections (or dotted keys) the role reads secrets from.
    fn sections(self) -> &'static [&'static str] {
        match self {
            Role::Topics => &["kafka"],
            Role::Ingest => &["kafka", "ingest"],
            Role::Projector => &["kafka", "projector"],
            Role::Provisioner => &["kafka", "provisioner"],
            // The stores of the other roles (not the push API's token).
            Role::Admin => &[
                "kafka",
                "ingest.database_url",
                "projector",
                "provisioner",
                "hooks.database_url",
            ],
            Role::Hooks => &["kafka", "hooks"],
        }
    }

    /// Whether the role serves /metrics, /healthz and /readyz.
    fn serves(self) -> bool {
        self != Role::Topics
    }
}

fn config_path(args: &[String]) -> &str {
    let at = args
        .iter()
        .position(|a| a == "--config" || a == "-c")
        .unwrap_or_else(|| panic!("{args:?} gives no --config"));
    args.get(at + 1).expect("a path after --config")
}

// ---------------------------------------------------------------------------
// docker-compose.yml

struct Compose {
    root: Yaml,
}

impl Compose {
    fn load() -> Compose {
        Compose {
            root: yaml(&repo().join("docker-compose.yml")),
        }
    }

    fn services(&self) -> impl Iterator<Item = (&str, &Yaml)> {
        self.root["services"]
            .as_mapping()
            .expect("services")
            .iter()
            .map(|(name, service)| (str_of(name, "service name"), service))
    }

    fn service(&self, name: &str) -> &Yaml {
        self.root["services"]
            .get(name)
            .unwrap_or_else(|| panic!("no compose service {name:?}"))
    }

    fn has_service(&self, name: &str) -> bool {
        self.root["services"].get(name).is_some()
    }

    /// Whether `name` starts only after `dependency`, directly or through
    /// the services it depends on.
    fn waits_for(&self, name: &str, dependency: &str) -> bool {
        let mut todo = vec![name];
        let mut seen = BTreeSet::new();
        while let Some(service) = todo.pop() {
            for (next, _) in self.service(service)["depends_on"]
                .as_mapping()
                .into_iter()
                .flatten()
            {
                let next = str_of(next, "dependency");
                if next == dependency {
                    return true;
                }
                if seen.insert(next) {
                    todo.push(next);
                }
            }
        }
        false
    }

    /// A service's bind mounts as (host path, container path).
    fn binds(service: &Yaml) -> Vec<(PathBuf, String)> {
        let mut binds = Vec::new();
        for mount in service["volumes"].as_sequence().into_iter().flatten() {
            let (source, target) = match mount {
                Yaml::String(short) => {
                    let mut parts = short.split(':');
                    let source = parts.next().unwrap_or_default().to_owned();
                    let target = parts.next().unwrap_or_default().to_owned();
                    (source, target)
                }
                long => (
                    str_of(&long["source"], "volume source").to_owned(),
                    str_of(&long["target"], "volume target").to_owned(),
                ),
            };
            if source.starts_with('.') || source.starts_with('/') {
                binds.push((repo().join(source.trim_start_matches("./")), target));
            }
        }
        binds
    }

    /// The host file behind `container_path` in `service` (a bound file or
    /// a file inside a bound directory).
    fn host_file(service: &Yaml, container_path: &str) -> Option<PathBuf> {
        Compose::binds(service)
            .into_iter()
            .find_map(|(host, target)| {
                if target == container_path {
                    Some(host)
                } else {
                    let rest = container_path.strip_prefix(&format!("{target}/"))?;
                    Some(host.join(rest))
                }
            })
            .filter(|path| path.is_file())
    }

    fn environment(service: &Yaml) -> BTreeMap<String, String> {
        match &service["environment"] {
            Yaml::Mapping(map) => map
                .iter()
                .map(|(k, v)| {
                    let value = match v {
                        Yaml::String(s) => s.clone(),
                        Yaml::Number(n) => n.to_string(),
                        Yaml::Bool(b) => b.to_string(),
                        other => panic!("environment value {other:?}"),
                    };
                    (str_of(k, "variable").to_owned(), value)
                })
                .collect(),
            Yaml::Sequence(list) => list
                .iter()
                .map(|item| {
                    let item = str_of(item, "environment entry");
                    let (k, v) = item.split_once('=').unwrap_or((item, ""));
                    (k.to_owned(), v.to_owned())
                })
                .collect(),
            _ => BTreeMap::new(),
        }
    }

    /// A service's secrets as container path -> top-level secret name.
    fn secrets(service: &Yaml) -> BTreeMap<String, String> {
        service["secrets"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|secret| match secret {
                Yaml::String(name) => (format!("/run/secrets/{name}"), name.clone()),
                long => {
                    let name = str_of(&long["source"], "secret source").to_owned();
                    let target = long["target"].as_str().unwrap_or(&name);
                    let target = if target.starts_with('/') {
                        target.to_owned()
                    } else {
                        format!("/run/secrets/{target}")
                    };
                    (target, name)
                }
            })
            .collect()
    }

    /// The host file of a top-level secret.
    fn secret_file(&self, name: &str) -> PathBuf {
        let file = str_of(
            &self.root["secrets"][name]["file"],
            &format!("secrets.{name}.file"),
        );
        repo().join(file.trim_start_matches("./"))
    }

    fn command(service: &Yaml) -> Vec<String> {
        service["command"]
            .as_sequence()
            .map(|args| {
                args.iter()
                    .map(|a| str_of(a, "argument").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The Dockerfile stage a built service runs (the last one by default).
    fn stage(&self, service: &Yaml) -> Option<Stage> {
        let build = service.get("build")?;
        let context = repo().join(build["context"].as_str().unwrap_or("."));
        let dockerfile = context.join(build["dockerfile"].as_str().unwrap_or("Dockerfile"));
        let stages = dockerfile_stages(&dockerfile);
        Some(match build["target"].as_str() {
            Some(target) => stages
                .into_iter()
                .find(|s| s.name.as_deref() == Some(target))
                .unwrap_or_else(|| panic!("{} has no stage {target:?}", dockerfile.display())),
            None => stages.into_iter().last().expect("a FROM"),
        })
    }

    /// The services whose command is an hrsync role.
    fn hrsync_roles(&self) -> Vec<(&str, &Yaml, Role)> {
        self.services()
            .filter(|(_, service)| {
                self.stage(service)
                    .is_some_and(|stage| stage.entrypoint_binary() == "hrsync")
            })
            .map(|(name, service)| (name, service, Role::of(&Compose::command(service))))
            .collect()
    }
}

/// One `FROM` stage of a Dockerfile.
#[derive(Debug)]
struct Stage {
    name: Option<String>,
    entrypoint: Vec<String>,
}

impl Stage {
    fn entrypoint_binary(&self) -> &str {
        self.entrypoint
            .first()
            .and_then(|path| path.rsplit('/').next())
            .unwrap_or_default()
    }
}

fn dockerfile_stages(path: &Path) -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    for line in read(path).lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [from, _image, as_, name]
                if from.eq_ignore_ascii_case("FROM") && as_.eq_ignore_ascii_case("AS") =>
            {
                stages.push(Stage {
                    name: Some((*name).to_owned()),
                    entrypoint: Vec::new(),
                });
            }
            [from, _image] if from.eq_ignore_ascii_case("FROM") => stages.push(Stage {
                name: None,
                entrypoint: Vec::new(),
            }),
            [entrypoint, ..] if entrypoint.eq_ignore_ascii_case("ENTRYPOINT") => {
                let exec = line[entrypoint.len()..].trim();
                let args: Vec<String> = serde_json::from_str(exec).unwrap_or_else(|_| {
                    panic!("{}: ENTRYPOINT in exec form, please", path.display())
                });
                stages.last_mut().expect("ENTRYPOINT after FROM").entrypoint = args;
            }
            _ => {}
        }
    }
    stages
}

#[test]
fn compose_mounts_exist_and_parse() {
    let compose = Compose::load();
    let mut checked = 0;
    for (name, service) in compose.services() {
        if let Some(build) = service.get("build") {
            let context = repo().join(build["context"].as_str().unwrap_or("."));
            assert!(
                context.is_dir(),
                "{name}: build context {} missing",
                context.display()
            );
            let stage = compose.stage(service).expect("a stage");
            let binary = stage.entrypoint_binary();
            assert!(
                !binary.is_empty(),
                "{name}: its Dockerfile stage has no ENTRYPOINT"
            );
            let dockerfile = context.join(build["dockerfile"].as_str().unwrap_or("Dockerfile"));
            let builds_it = read(&dockerfile)
                .lines()
                .filter(|line| line.contains("cargo build"))
                .any(|line| line.split_whitespace().any(|w| w == binary));
            assert!(
                builds_it,
                "{name}: no `cargo build` in {} builds {binary}",
                dockerfile.display()
            );
        }
        for (host, target) in Compose::binds(service) {
            assert!(
                host.exists(),
                "{name}: mounts missing {} at {target}",
                host.display()
            );
            for file in files_under(&host) {
                parse_by_extension(&file);
                checked += 1;
            }
        }
        for secret in Compose::secrets(service).values() {
            let file = compose.secret_file(secret);
            assert!(
                file.is_file(),
                "{name}: secret {secret}: {} missing",
                file.display()
            );
        }
        for env_file in service["env_file"].as_sequence().into_iter().flatten() {
            let file = repo().join(str_of(env_file, "env_file"));
            assert!(
                file.is_file(),
                "{name}: env_file {} missing",
                file.display()
            );
        }
    }
    assert!(checked >= 10, "only {checked} mounted files checked");
}

#[test]
fn compose_images_are_pinned_and_start_order_holds() {
    let compose = Compose::load();
    for (name, service) in compose.services() {
        let image = service["image"].as_str();
        if service.get("build").is_none() {
            let image = image.unwrap_or_else(|| panic!("{name}: needs an image or a build"));
            let tag = image
                .rsplit_once(':')
                .map(|(_, tag)| tag)
                .filter(|tag| !tag.contains('/'))
                .unwrap_or_else(|| panic!("{name}: image {image} has no tag"));
            assert!(
                tag != "latest" && tag.chars().any(|c| c.is_ascii_digit()),
                "{name}: image {image} is not pinned to a version"
            );
        }
        let Some(depends) = service.get("depends_on") else {
            continue;
        };
        let depends = depends
            .as_mapping()
            .unwrap_or_else(|| panic!("{name}: depends_on with conditions, please"));
        for (dependency, how) in depends {
            let dependency = str_of(dependency, "dependency");
            assert!(
                compose.has_service(dependency),
                "{name}: depends on unknown {dependency}"
            );
            let target = compose.service(dependency);
            match str_of(&how["condition"], "condition") {
                "service_started" => {}
                "service_healthy" => assert!(
                    target.get("healthcheck").is_some(),
                    "{name} waits for {dependency} to be healthy, which has no health check"
                ),
                "service_completed_successfully" => assert_eq!(
                    target["restart"].as_str(),
                    Some("no"),
                    "{name} waits for {dependency} to complete, which restarts"
                ),
                other => panic!("{name}: unknown condition {other}"),
            }
        }
    }
    // No cycles: every service can start.
    let mut started: BTreeSet<&str> = BTreeSet::new();
    loop {
        let before = started.len();
        for (name, service) in compose.services() {
            let ready = service["depends_on"]
                .as_mapping()
                .into_iter()
                .flatten()
                .all(|(d, _)| started.contains(str_of(d, "dependency")));
            if ready {
                started.insert(name);
            }
        }
        if started.len() == before {
            break;
        }
    }
    let all: BTreeSet<&str> = compose.services().map(|(name, _)| name).collect();
    assert_eq!(started, all, "services in a dependency cycle never start");
}

#[test]
fn compose_hrsync_configs_load_and_find_the_stack() {
    let compose = Compose::load();
    let prometheus_targets = prometheus_targets(&compose);
    let roles = compose.hrsync_roles();
    let names: BTreeSet<Role> = roles.iter().map(|(_, _, role)| *role).collect();
    for role in [
        Role::Topics,
        Role::Ingest,
        Role::Projector,
        Role::Provisioner,
    ] {
        assert!(names.contains(&role), "compose runs no {role:?}");
    }
    for (name, service, role) in roles {
        let args = Compose::command(service);
        assert!(hrsync_accepts(&args), "{name}: hrsync rejects {args:?}");
        let file = Compose::host_file(service, config_path(&args))
            .unwrap_or_else(|| panic!("{name}: nothing mounted at {}", config_path(&args)));
        let env = Compose::environment(service);
        let hrsync_env = env
            .iter()
            .filter(|(k, _)| k.starts_with("HRSYNC_"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let config = config_check(&file, &hrsync_env);
        let depends = |dependency: &str| compose.waits_for(name, dependency);

        for (host, _) in host_ports(str_at(&config, "kafka.brokers")) {
            assert!(
                compose.has_service(&host),
                "{name}: broker {host} is no service"
            );
            assert!(depends(&host), "{name}: does not wait for {host}");
        }
        let secrets = Compose::secrets(service);
        for secret in secret_refs(&config, role.sections()) {
            match secret {
                SecretRef::Env(var) => {
                    let value = env
                        .get(&var)
                        .unwrap_or_else(|| panic!("{name}: config reads ${var}, which is unset"));
                    if let Ok(url) = Url::parse(value) {
                        let host = url.host_str().unwrap_or_default();
                        assert!(compose.has_service(host), "{name}: ${var} names {host}");
                        assert!(depends(host), "{name}: does not wait for {host}");
                    }
                }
                SecretRef::File(path) => assert!(
                    secrets.contains_key(&path),
                    "{name}: config reads the file {path}, which no secret provides"
                ),
            }
        }
        if !role.serves() {
            continue;
        }
        let listen = port_of(str_at(&config, "telemetry.listen"));
        assert!(
            prometheus_targets.contains(&format!("{name}:{listen}")),
            "Prometheus does not scrape {name}:{listen} ({prometheus_targets:?})"
        );
        let health = strings(&service["healthcheck"]["test"], "health check").join(" ");
        assert!(
            health.contains(&format!(":{listen}/readyz")),
            "{name}: the health check does not ask /readyz on {listen}: {health}"
        );
        if let Some(endpoint) = value_at(&config, "telemetry.otlp_endpoint") {
            let url = Url::parse(endpoint.as_str().expect("a string")).expect("an URL");
            let collector = url.host_str().unwrap_or_default();
            assert!(
                compose.has_service(collector),
                "{name}: traces go to {collector}"
            );
            let receiver = otlp_http_receiver(compose.service(collector));
            assert_eq!(
                url.port_or_known_default(),
                Some(port_of(&receiver)),
                "{name}: traces to {url}, the collector listens on {receiver}"
            );
        }
        match role {
            Role::Ingest => {
                let push = port_of(str_at(&config, "ingest.push.listen"));
                let published = strings(&service["ports"], "port");
                assert!(
                    published.iter().any(|p| p.ends_with(&format!(":{push}"))),
                    "{name}: push API port {push} not published: {published:?}"
                );
            }
            Role::Provisioner => check_compose_apps(&compose, name, service, &config),
            Role::Topics | Role::Projector | Role::Admin | Role::Hooks => {}
        }
    }
}

/// Each `[[provisioner.apps]]` entry reaches a compose SCIM app that listens
/// on its port and accepts the same token file, and is waited for.
fn check_compose_apps(compose: &Compose, name: &str, service: &Yaml, config: &toml::Table) {
    let scim_app_cli = read(&repo().join("crates/hrsync-scim-app/src/main.rs"));
    let apps = value_at(config, "provisioner.apps")
        .and_then(toml::Value::as_array)
        .expect("provisioner.apps");
    assert!(!apps.is_empty(), "{name}: no apps to provision into");
    let secrets = Compose::secrets(service);
    for app in apps {
        let url = Url::parse(app["base_url"].as_str().expect("base_url")).expect("base_url");
        let host = url.host_str().unwrap_or_default();
        assert!(compose.has_service(host), "app {url} is no compose service");
        assert_eq!(
            service["depends_on"][host]["condition"].as_str(),
            Some("service_healthy"),
            "{name}: does not wait for {host} to be healthy"
        );
        let scim = compose.service(host);
        let stage = compose.stage(scim).expect("the SCIM app is built here");
        assert_eq!(stage.entrypoint_binary(), "hrsync-scim-app");
        let scim_env = Compose::environment(scim);
        for key in scim_env.keys() {
            assert!(
                scim_app_cli.contains(&format!("env = \"{key}\"")),
                "{host}: hrsync-scim-app reads no {key}"
            );
        }
        let listen = scim_env
            .get("HRSYNC_SCIM_APP_LISTEN")
            .unwrap_or_else(|| panic!("{host}: no HRSYNC_SCIM_APP_LISTEN"));
        assert_eq!(url.port_or_known_default(), Some(port_of(listen)), "{host}");
        let token_file = app["token"]["file"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: the {host} token is not a file"));
        let ours = compose.secret_file(&secrets[token_file]);
        let app_file = scim_env
            .get("HRSYNC_SCIM_APP_TOKEN_FILE")
            .unwrap_or_else(|| panic!("{host}: no HRSYNC_SCIM_APP_TOKEN_FILE"));
        let theirs = Compose::secrets(scim)
            .get(app_file)
            .map(|secret| compose.secret_file(secret))
            .unwrap_or_else(|| panic!("{host}: no secret at {app_file}"));
        assert_eq!(ours, theirs, "{name} and {host} use different tokens");
    }
}

/// The `host:port` of the OTLP/HTTP receiver in a collector service's
/// mounted config.
fn otlp_http_receiver(collector: &Yaml) -> String {
    let (host, _) = Compose::binds(collector)
        .into_iter()
        .find(|(host, _)| host.extension().is_some_and(|e| e == "yaml"))
        .expect("the collector mounts a config");
    let config = yaml(&host);
    str_of(
        &config["receivers"]["otlp"]["protocols"]["http"]["endpoint"],
        "otlp http endpoint",
    )
    .to_owned()
}

/// Every `host:port` Prometheus scrapes, from the config mounted into the
/// compose service `prometheus`.
fn prometheus_targets(compose: &Compose) -> BTreeSet<String> {
    let file = Compose::host_file(
        compose.service("prometheus"),
        "/etc/prometheus/prometheus.yml",
    )
    .expect("prometheus.yml mounted");
    let config = yaml(&file);
    let mut targets = BTreeSet::new();
    for job in config["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
    {
        for group in job["static_configs"].as_sequence().into_iter().flatten() {
            for target in group["targets"].as_sequence().expect("targets") {
                targets.insert(str_of(target, "target").to_owned());
            }
        }
        // A service of several replicas is found by DNS: every address of
        // each name, on the port given.
        for sd in job["dns_sd_configs"].as_sequence().into_iter().flatten() {
            let port = sd["port"].as_u64().expect("dns_sd_configs port");
            for name in sd["names"].as_sequence().expect("names") {
                targets.insert(format!("{}:{port}", str_of(name, "name")));
            }
        }
    }
    targets
}

#[test]
fn observability_services_are_wired_together() {
    let compose = Compose::load();
    for target in prometheus_targets(&compose) {
        let (host, _) = &host_ports(&target)[0];
        assert!(
            host == "localhost" || compose.has_service(host),
            "Prometheus scrapes {target}, which is no service"
        );
    }

    // Collector: every pipeline component is defined, and traces go to a
    // service that receives OTLP/gRPC on that port.
    let collector = compose.service("otel-collector");
    let (file, _) = Compose::binds(collector)
        .into_iter()
        .next()
        .expect("config");
    let config = yaml(&file);
    for (pipeline, spec) in config["service"]["pipelines"]
        .as_mapping()
        .expect("pipelines")
    {
        for kind in ["receivers", "processors", "exporters"] {
            for component in spec[kind].as_sequence().into_iter().flatten() {
                let component = str_of(component, kind);
                assert!(
                    config[kind].get(component).is_some(),
                    "collector pipeline {pipeline:?} uses undefined {kind}.{component}"
                );
            }
        }
        for exporter in spec["exporters"].as_sequence().into_iter().flatten() {
            let endpoint = str_of(&config["exporters"][exporter]["endpoint"], "endpoint");
            let (host, port) = &host_ports(endpoint)[0];
            let tempo = compose.service(host);
            let tempo_file = Compose::binds(tempo)
                .into_iter()
                .map(|(host, _)| host)
                .find(|h| h.is_file())
                .expect("Tempo's config");
            let receiver = str_of(
                &yaml(&tempo_file)["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]
                    ["endpoint"],
                "Tempo's OTLP gRPC endpoint",
            )
            .to_owned();
            assert_eq!(*port, port_of(&receiver), "collector -> {host}");
        }
    }

    // Grafana: data sources point at services; the dashboards provider reads
    // the directory the dashboards are mounted at; the home dashboard exists.
    let grafana = compose.service("grafana");
    let datasources = Compose::host_file(
        grafana,
        "/etc/grafana/provisioning/datasources/datasources.yaml",
    )
    .expect("data sources mounted");
    for source in yaml(&datasources)["datasources"]
        .as_sequence()
        .expect("list")
    {
        let url = Url::parse(str_of(&source["url"], "url")).expect("url");
        let host = url.host_str().unwrap_or_default();
        assert!(compose.has_service(host), "data source {url} is no service");
    }
    let providers = Compose::host_file(
        grafana,
        "/etc/grafana/provisioning/dashboards/dashboards.yaml",
    )
    .expect("dashboard providers mounted");
    for provider in yaml(&providers)["providers"]
        .as_sequence()
        .expect("providers")
    {
        let path = str_of(&provider["options"]["path"], "provider path");
        let dashboards = Compose::binds(grafana)
            .into_iter()
            .find(|(_, target)| target == path)
            .map(|(host, _)| host)
            .unwrap_or_else(|| panic!("Grafana reads dashboards from {path}; nothing is mounted"));
        assert_eq!(dashboards, repo().join("deploy/grafana/dashboards"));
    }
    let home = Compose::environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].clone();
    assert!(
        Compose::host_file(grafana, &home).is_some(),
        "home dashboard {home} is not mounted"
    );
}

// ---------------------------------------------------------------------------
// deploy/k8s

/// `labels` holds every pair of `subset`.
fn labels_cover(labels: &Yaml, subset: &Yaml) -> bool {
    let subset = subset.as_mapping().expect("a label mapping");
    !subset.is_empty() && subset.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A container port by name or number, as a probe or Service names it.
fn container_port(container: &Yaml, port: &Yaml) -> u16 {
    let ports = container["ports"].as_sequence().expect("ports");
    let found = match port {
        Yaml::String(name) => ports.iter().find(|p| p["name"].as_str() == Some(name)),
        Yaml::Number(number) => ports
            .iter()
            .find(|p| p["containerPort"] == Yaml::Number(number.clone())),
        other => panic!("port {other:?}"),
    };
    let found =
        found.unwrap_or_else(|| panic!("container {:?} has no port {port:?}", container["name"]));
    found["containerPort"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .expect("a port number")
}

/// The ConfigMaps kustomize generates (`configMapGenerator`: each file's
/// name a key, its text the value). Their names get a hash of the content,
/// so a changed config rolls the pods that mount it: no generator may turn
/// that off.
fn generated_config_maps(dir: &Path, kustomization: &Yaml) -> Vec<Yaml> {
    let mut maps = Vec::new();
    for generator in kustomization["configMapGenerator"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        let name = str_of(&generator["name"], "configMapGenerator name");
        assert_ne!(
            generator["options"]["disableNameSuffixHash"].as_bool(),
            Some(true),
            "{name}: without the hash suffix a config change rolls no pod"
        );
        let mut data = serde_norway::Mapping::new();
        for file in strings(&generator["files"], "file") {
            data.insert(Yaml::from(file.clone()), Yaml::from(read(&dir.join(&file))));
        }
        let text = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n");
        let mut map: Yaml = serde_norway::from_str(&text).expect("a ConfigMap");
        map["data"] = Yaml::Mapping(data);
        maps.push(map);
    }
    maps
}

#[test]
fn kubernetes_manifests_run_each_role_with_probes_and_secrets() {
    let dir = repo().join("deploy/k8s");
    let kustomization = yaml(&dir.join("kustomization.yaml"));
    let resources: BTreeSet<String> = strings(&kustomization["resources"], "resource")
        .into_iter()
        .collect();
    let manifests: BTreeSet<String> = files_under(&dir)
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    // The admin and hooks roles are listed once their sections are set.
    let optional = BTreeSet::from(["admin.yaml".to_owned(), "hooks.yaml".to_owned()]);
    assert_eq!(
        resources.union(&optional).cloned().collect::<BTreeSet<_>>(),
        manifests,
        "kustomization.yaml lists every manifest but admin.yaml and hooks.yaml"
    );

    let mut objects: Vec<Yaml> = manifests
        .iter()
        .flat_map(|file| yaml_documents(&dir.join(file)))
        .collect();
    objects.extend(generated_config_maps(&dir, &kustomization));
    let of_kind = |kind: &str| -> Vec<&Yaml> {
        objects
            .iter()
            .filter(|o| o["kind"].as_str() == Some(kind))
            .collect()
    };
    for object in &objects {
        let kind = str_of(&object["kind"], "kind");
        let api = match kind {
            "Deployment" => "apps/v1",
            "Service" | "ConfigMap" => "v1",
            "NetworkPolicy" => "networking.k8s.io/v1",
            "PodDisruptionBudget" => "policy/v1",
            other => panic!("unexpected kind {other}"),
        };
        assert_eq!(object["apiVersion"].as_str(), Some(api), "{kind}");
        str_of(&object["metadata"]["name"], "metadata.name");
    }
    let config_map = |name: &str| -> &Yaml {
        of_kind("ConfigMap")
            .into_iter()
            .find(|c| c["metadata"]["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no ConfigMap {name}"))
    };
    let scratch = tempfile::tempdir().expect("temp dir");

    let deployments = of_kind("Deployment");
    assert_eq!(deployments.len(), 5, "one Deployment per role");
    let mut roles = BTreeSet::new();
    for deployment in deployments {
        let name = str_of(&deployment["metadata"]["name"], "name");
        let spec = &deployment["spec"];
        let template = &spec["template"];
        let labels = &template["metadata"]["labels"];
        assert!(
            labels_cover(labels, &spec["selector"]["matchLabels"]),
            "{name}: the selector does not match the pod labels"
        );
        let pod = &template["spec"];
        assert_eq!(
            pod["automountServiceAccountToken"].as_bool(),
            Some(false),
            "{name}: hrsync needs no service account token in its pods"
        );
        let volumes = pod["volumes"].as_sequence().expect("volumes");
        let volume = |name: &str| -> &Yaml {
            volumes
                .iter()
                .find(|v| v["name"].as_str() == Some(name))
                .unwrap_or_else(|| panic!("no volume {name}"))
        };
        let containers = pod["containers"].as_sequence().expect("containers");
        assert_eq!(containers.len(), 1, "{name}: one container");
        let init = pod["initContainers"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        for container in init.iter().chain(containers) {
            let args = strings(&container["args"], "argument");
            assert!(hrsync_accepts(&args), "{name}: hrsync rejects {args:?}");
        }
        let container = &containers[0];
        let args = strings(&container["args"], "argument");
        let role = Role::of(&args);
        // The container ports the Service selecting these pod labels targets.
        let service_targets = |labels: &Yaml| -> BTreeSet<u16> {
            let service = of_kind("Service")
                .into_iter()
                .find(|s| labels_cover(labels, &s["spec"]["selector"]))
                .unwrap_or_else(|| panic!("no Service selects {name}"));
            service["spec"]["ports"]
                .as_sequence()
                .expect("ports")
                .iter()
                .map(|p| container_port(container, &p["targetPort"]))
                .collect()
        };
        assert!(role.serves(), "{name}: {role:?} is not a long-running role");
        roles.insert(role);

        // The config file: a ConfigMap key, mounted as a directory.
        let path = Path::new(config_path(&args));
        let mount_dir = path.parent().and_then(Path::to_str).expect("a directory");
        let key = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a file name");
        let mounts = container["volumeMounts"]
            .as_sequence()
            .expect("volumeMounts");
        let config_mount = mounts
            .iter()
            .find(|m| m["mountPath"].as_str() == Some(mount_dir))
            .unwrap_or_else(|| panic!("{name}: nothing mounted at {mount_dir}"));
        let config_volume = volume(str_of(&config_mount["name"], "mount name"));
        let text = str_of(
            &config_map(str_of(&config_volume["configMap"]["name"], "configMap"))["data"][key],
            key,
        );
        // An optional role runs with the sections hrsync.toml has commented
        // out for it: check it as it will run.
        let text = match role {
            Role::Admin | Role::Hooks => with_commented_sections(text),
            _ => text.to_owned(),
        };
        let file = scratch.path().join(format!("{name}.toml"));
        std::fs::write(&file, text).expect("writing the config");

        // Environment: plain HRSYNC_ overrides, secrets from Secrets.
        let mut hrsync_env = BTreeMap::new();
        let mut from_secrets = BTreeSet::new();
        for variable in container["env"].as_sequence().into_iter().flatten() {
            let var = str_of(&variable["name"], "env name").to_owned();
            if let Some(value) = variable["value"].as_str() {
                if var.starts_with("HRSYNC_") {
                    hrsync_env.insert(var, value.to_owned());
                }
            } else if variable["valueFrom"]["secretKeyRef"]["name"].is_string()
                && variable["valueFrom"]["secretKeyRef"]["key"].is_string()
            {
                from_secrets.insert(var);
            }
        }
        let config = config_check(&file, &hrsync_env);
        for secret in secret_refs(&config, role.sections()) {
            match secret {
                SecretRef::Env(var) => assert!(
                    from_secrets.contains(&var),
                    "{name}: config reads ${var}, which no secretKeyRef sets"
                ),
                SecretRef::File(path) => {
                    let provided = mounts.iter().any(|mount| {
                        let Some(rest) = mount["mountPath"]
                            .as_str()
                            .and_then(|dir| path.strip_prefix(&format!("{dir}/")))
                        else {
                            return false;
                        };
                        let secret = &volume(str_of(&mount["name"], "mount name"))["secret"];
                        secret["secretName"].is_string()
                            && secret["items"].as_sequence().is_none_or(|items| {
                                items.iter().any(|i| i["path"].as_str() == Some(rest))
                            })
                    });
                    assert!(
                        provided,
                        "{name}: config reads {path}, which no Secret volume holds"
                    );
                }
            }
        }

        // Probes and scraping on telemetry.listen.
        let listen = port_of(str_at(&config, "telemetry.listen"));
        for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
            let get = &container[probe]["httpGet"];
            assert_eq!(get["path"].as_str(), Some(path), "{name}: {probe}");
            assert_eq!(
                container_port(container, &get["port"]),
                listen,
                "{name}: {probe} port"
            );
        }
        let annotations = &template["metadata"]["annotations"];
        assert_eq!(
            annotations["prometheus.io/port"].as_str(),
            Some(listen.to_string().as_str()),
            "{name}: scrape port"
        );
        match role {
            Role::Ingest => {
                let push = port_of(str_at(&config, "ingest.push.listen"));
                assert_eq!(container_port(container, &Yaml::from("push")), push);
                assert_eq!(
                    service_targets(labels),
                    BTreeSet::from([push, listen]),
                    "{name}: Service ports"
                );
            }
            Role::Hooks => {
                // Two on one store (one sends at a time, the other takes
                // over), kept up through a drain; the SSF keys served.
                assert!(
                    spec["replicas"].as_u64().unwrap_or(1) >= 2,
                    "{name}: replicas"
                );
                let budgets = of_kind("PodDisruptionBudget")
                    .into_iter()
                    .filter(|b| labels_cover(labels, &b["spec"]["selector"]["matchLabels"]))
                    .count();
                assert_eq!(budgets, 1, "{name}: one PodDisruptionBudget");
                assert!(
                    value_at(&config, "hooks.endpoints").is_some(),
                    "{name}: checked without its [hooks] section"
                );
                let ssf = port_of(str_at(&config, "hooks.ssf.listen"));
                assert_eq!(container_port(container, &Yaml::from("ssf")), ssf);
                assert_eq!(
                    service_targets(labels),
                    BTreeSet::from([ssf, listen]),
                    "{name}: Service ports"
                );
            }
            Role::Admin => {
                // Two serve the API and the console (its sessions are in
                // the store), kept up through a drain, rolled one by one.
                assert!(
                    spec["replicas"].as_u64().unwrap_or(1) >= 2,
                    "{name}: replicas"
                );
                assert_ne!(
                    spec["strategy"]["type"].as_str(),
                    Some("Recreate"),
                    "{name}"
                );
                let budgets = of_kind("PodDisruptionBudget")
                    .into_iter()
                    .filter(|b| labels_cover(labels, &b["spec"]["selector"]["matchLabels"]))
                    .count();
                assert_eq!(budgets, 1, "{name}: one PodDisruptionBudget");
                let admin = container_port(container, &Yaml::from("admin"));
                assert_eq!(
                    service_targets(labels),
                    BTreeSet::from([admin, listen]),
                    "{name}: Service ports"
                );
            }
            Role::Projector => {
                // One process owns the store: never two at once, not even
                // during an update.
                assert_eq!(spec["replicas"].as_u64(), Some(1), "{name}: replicas");
                assert_eq!(
                    spec["strategy"]["type"].as_str(),
                    Some("Recreate"),
                    "{name}"
                );
            }
            Role::Provisioner => {
                // Several replicas share the work (a person's lease in the
                // store serialises their changes), and a budget keeps one
                // up through a drain.
                let replicas = spec["replicas"].as_u64().unwrap_or(1);
                assert!(replicas >= 2, "{name}: {replicas} replica(s)");
                let budgets: Vec<&Yaml> = of_kind("PodDisruptionBudget")
                    .into_iter()
                    .filter(|b| labels_cover(labels, &b["spec"]["selector"]["matchLabels"]))
                    .collect();
                assert_eq!(budgets.len(), 1, "{name}: one PodDisruptionBudget");
                assert_eq!(budgets[0]["spec"]["minAvailable"].as_u64(), Some(1));
            }
            Role::Topics => unreachable!(),
        }
    }
    assert_eq!(
        roles,
        BTreeSet::from([
            Role::Ingest,
            Role::Projector,
            Role::Provisioner,
            Role::Admin,
            Role::Hooks
        ])
    );
    for service in of_kind("Service") {
        assert!(
            of_kind("Deployment").iter().any(|d| labels_cover(
                &d["spec"]["template"]["metadata"]["labels"],
                &service["spec"]["selector"]
            )),
            "Service {:?} selects no pods",
            service["metadata"]["name"]
        );
    }
}

// ---------------------------------------------------------------------------
// Dashboards and the metrics the code exports

/// Series Prometheus itself adds to every scrape.
const SCRAPE_SERIES: &[&str] = &["up", "scrape_duration_seconds", "scrape_samples_scraped"];

fn dashboards() -> Vec<(PathBuf, Json)> {
    files_under(&repo().join("deploy/grafana/dashboards"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let dashboard = json(&p);
            (p, dashboard)
        })
        .collect()
}

/// Every PromQL expression of a dashboard's panels, with its panel title,
/// and the metric selectors of its template variables.
fn dashboard_queries(dashboard: &Json) -> Vec<(String, BTreeSet<String>)> {
    fn panels(value: &Json, out: &mut Vec<(String, BTreeSet<String>)>) {
        for panel in value["panels"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or_default();
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((format!("{title}: {expr}"), promql::metric_names(expr)));
                }
            }
            panels(panel, out);
        }
    }
    let mut out = Vec::new();
    panels(dashboard, &mut out);
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let query = match &variable["query"] {
            Json::String(query) => query.as_str(),
            Json::Object(object) => object["query"].as_str().unwrap_or_default(),
            _ => "",
        };
        if variable["type"] == "query" {
            out.push((
                format!("variable {}: {query}", variable["name"]),
                promql::variable_metric_names(query),
            ));
        }
    }
    out
}

fn pending_metrics() -> BTreeMap<String, Vec<String>> {
    let path = repo().join("deploy/grafana/pending-metrics.txt");
    let mut pending: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in read(&path).lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (metric, panel) = line
            .split_once(char::is_whitespace)
            .unwrap_or_else(|| panic!("pending-metrics.txt: {line:?} names no panel"));
        pending
            .entry(metric.to_owned())
            .or_default()
            .push(panel.trim().to_owned());
    }
    pending
}

#[test]
fn dashboards_query_only_exported_metrics() {
    let exported = metrics::exported_series(&repo());
    assert!(
        exported.contains("hrsync_bus_records_produced_total"),
        "the scan finds the bus metrics: {exported:?}"
    );
    let datasources =
        yaml(&repo().join("deploy/grafana/provisioning/datasources/datasources.yaml"));
    let uids: BTreeSet<&str> = datasources["datasources"]
        .as_sequence()
        .expect("data sources")
        .iter()
        .map(|d| str_of(&d["uid"], "uid"))
        .collect();
    let mut dashboard_uids = BTreeSet::new();
    let boards = dashboards();
    assert_eq!(
        boards.len(),
        3,
        "pipeline overview, termination SLO, per-app health"
    );
    for (path, dashboard) in &boards {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let uid = dashboard["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no uid"));
        assert!(
            dashboard_uids.insert(uid.to_owned()),
            "{name}: uid {uid} used twice"
        );
        let mut stack = vec![dashboard];
        while let Some(value) = stack.pop() {
            match value {
                Json::Object(object) => {
                    if let Some(Json::String(uid)) = object.get("datasource").map(|d| &d["uid"]) {
                        assert!(
                            uids.contains(uid.as_str())
                                || uid.starts_with("-- ")
                                || uid.starts_with('$'),
                            "{name}: data source uid {uid} is not provisioned"
                        );
                    }
                    stack.extend(object.values());
                }
                Json::Array(items) => stack.extend(items),
                _ => {}
            }
        }
        let queries = dashboard_queries(dashboard);
        assert!(queries.len() >= 5, "{name}: only {} queries", queries.len());
        for (query, names) in queries {
            assert!(
                !names.is_empty() || query.starts_with("variable"),
                "{name}: {query} selects no metric"
            );
            for metric in names {
                assert!(
                    exported.contains(&metric) || SCRAPE_SERIES.contains(&metric.as_str()),
                    "{name}: {query}\n  queries {metric}, which no code exports; \
                     list the panel in deploy/grafana/pending-metrics.txt instead"
                );
            }
        }
    }

    let boards: BTreeSet<String> = boards
        .iter()
        .map(|(p, _)| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    // Every panel may have landed: an empty list is fine.
    let pending = pending_metrics();
    for (metric, panels) in pending {
        let series = metrics::series_names(&metric);
        assert!(
            series.iter().all(|s| !exported.contains(s)),
            "{metric} is exported now: add its panels ({panels:?}) to the dashboards \
             and remove it from deploy/grafana/pending-metrics.txt"
        );
        for panel in panels {
            let board = panel.split(':').next().unwrap_or_default();
            assert!(
                boards.contains(board),
                "pending {metric}: no dashboard {board}"
            );
        }
    }
}

#[test]
fn an_unexported_metric_is_caught() {
    let exported = metrics::exported_series(&repo());
    let expr = r#"sum by (app) (rate(hrsync_provisioner_operations_totl{outcome="FAILED"}[$__rate_interval]))"#;
    let missing: Vec<String> = promql::metric_names(expr)
        .into_iter()
        .filter(|m| !exported.contains(m))
        .collect();
    assert_eq!(missing, ["hrsync_provisioner_operations_totl"]);
    // Histograms without configured buckets are summaries: no `_bucket`.
    assert!(exported.contains("hrsync_bus_processing_seconds_count"));
    assert_eq!(
        exported.contains("hrsync_bus_processing_seconds_bucket"),
        !exported.contains("hrsync_bus_processing_seconds"),
    );
}
