//! What the compose stack keeps and how its image builds: Kafka's log
//! lives in a named volume (it is hrsync's source of truth, and PostgreSQL
//! keeps offsets into it), the host reaches Kafka on a published port, and
//! the image's build stage copies only what it compiles, so an edit to the
//! docs or the dashboards does not rebuild the workspace.

use super::{read, repo, str_of, Compose};

#[test]
fn kafkas_log_lives_in_a_named_volume() {
    let compose = Compose::load();
    let kafka = compose.service("kafka");
    let dirs = str_of(&kafka["environment"]["KAFKA_LOG_DIRS"], "KAFKA_LOG_DIRS");
    let volumes = &compose.root["volumes"];
    for dir in dirs.split(',') {
        let mounted = kafka["volumes"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|v| str_of(v, "volume"))
            .filter_map(|v| v.split_once(':'))
            .find(|(_, target)| {
                let target = target.trim_end_matches(":ro").trim_end_matches('/');
                dir == target || dir.starts_with(&format!("{target}/"))
            });
        let (source, _) = mounted
            .unwrap_or_else(|| panic!("Kafka's log directory {dir} is in no mounted volume"));
        assert!(
            !source.starts_with('.') && !source.starts_with('/') && volumes.get(source).is_some(),
            "{dir} is mounted from {source}, not a named volume the stack declares"
        );
    }
}

#[test]
fn the_host_reaches_kafka_on_a_published_port() {
    let compose = Compose::load();
    let kafka = compose.service("kafka");
    let advertised = str_of(
        &kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"],
        "KAFKA_ADVERTISED_LISTENERS",
    );
    let host = advertised
        .split(',')
        .find_map(|l| l.split_once("://localhost:"))
        .map(|(_, port)| port)
        .unwrap_or_else(|| panic!("no listener advertised to localhost: {advertised}"));
    let published: Vec<&str> = kafka["ports"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|p| str_of(p, "port"))
        .collect();
    assert!(
        published.contains(&format!("{host}:{host}").as_str()),
        "port {host} is advertised to the host but not published: {published:?}"
    );
    let listeners = str_of(&kafka["environment"]["KAFKA_LISTENERS"], "KAFKA_LISTENERS");
    assert!(listeners.contains(&format!(":{host}")), "{listeners}");
}

#[test]
fn the_image_build_copies_only_what_it_compiles() {
    let dockerfile = read(&repo().join("deploy/Dockerfile"));
    let build: Vec<&str> = dockerfile
        .lines()
        .skip_while(|l| !l.starts_with("FROM") || !l.ends_with("AS build"))
        .skip(1)
        .take_while(|l| !l.starts_with("FROM"))
        .collect();
    assert!(!build.is_empty(), "no build stage");
    let mut copied = Vec::new();
    for line in &build {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"COPY") {
            copied.extend(words[1..words.len() - 1].iter().copied());
        }
    }
    assert!(!copied.is_empty(), "the build stage copies nothing");
    for source in &copied {
        assert!(
            ["Cargo.toml", "Cargo.lock", "schemas", "crates", "tests"].contains(source),
            "the build stage copies {source}: an edit there rebuilds the workspace"
        );
    }
    let run = build.join("\n");
    assert!(
        run.contains("--mount=type=cache,target=/usr/local/cargo/registry")
            && run.contains("--mount=type=cache,target=/src/target"),
        "the registry and target/ are not cache mounts"
    );
    let ignored = read(&repo().join(".dockerignore"));
    for pattern in ["target", "**/node_modules"] {
        assert!(
            ignored.lines().any(|l| l == pattern),
            ".dockerignore lacks {pattern}"
        );
    }
}
