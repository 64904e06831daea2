//! Admin API benchmark: how fast a person lookup and a person search
//! answer with `--persons` persons stored (PostgreSQL), as an admin or the
//! console asks them: over HTTP, with a bearer JWT from a real issuer
//! (`tests/oidc-provider/issuer.mjs`), each lookup reading the person's
//! state, events, the explanation of every group rule, accounts and last
//! operations.
//!
//! The persons are stored by the projector itself (its `apply_batch`, as
//! the `projector` role does), under five group rules; then `--requests`
//! lookups of random persons and a quarter as many searches (a name
//! fragment; a group with a lifecycle) are made one after another, and
//! their latencies reported (p50, p99, max); then three rules previews
//! (every stored person evaluated under the rules in force and a changed
//! set), timed. Last, it signs in to the console served beside the API
//! and loads each console page as a browser does (page, script, session,
//! the page's reads through the console's API), reporting each page's
//! latencies.
//!
//! ```sh
//! cargo build --release -p hrsync-tests --bin bench_admin
//! target/release/bench_admin --persons 100000
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use hrsync_admin::AdminApi;
use hrsync_auth::{Authorizer, OAuthConfig, Verifier};
use hrsync_domain::{
    EmployeeId, EmploymentType, Hire, LifecycleEvent, LifecyclePayload, SourceSystem, TimeZone,
    Timestamp, WorkerAttributes,
};
use hrsync_projector::config::ProjectorConfig;
use hrsync_projector::project::{Incoming, Projector};
use hrsync_projector::rules::{GroupConfig, RulesConfig};
use hrsync_provisioner::config::ProvisionerConfig;
use hrsync_provisioner::run::Provisioner;
use hrsync_store::Db;
use hrsync_tests::{Broker, Issuer, PgDatabase, HRSYNC_AUDIENCE};
use rand::Rng;

#[derive(Debug, Parser)]
struct Args {
    /// Persons stored.
    #[arg(long, default_value_t = 100_000)]
    persons: usize,
    /// Person lookups measured (searches: a quarter of this).
    #[arg(long, default_value_t = 2_000)]
    requests: usize,
}

const DEPARTMENTS: [&str; 6] = [
    "Customer Support",
    "Engineering",
    "Finance",
    "Sales",
    "Marketing",
    "People",
];

fn group(name: &str, rule: &str, apps: &[&str]) -> GroupConfig {
    GroupConfig {
        name: name.to_owned(),
        rule: rule.to_owned(),
        apps: apps.iter().map(|a| (*a).to_owned()).collect(),
        description: None,
        previous_names: Vec::new(),
    }
}

fn rules() -> RulesConfig {
    RulesConfig {
        groups: vec![
            group("Everyone", "true", &["slack"]),
            group(
                "Customer Support",
                "person.department == \"Customer Support\"",
                &["zendesk"],
            ),
            group(
                "Engineering",
                "person.department == \"Engineering\"",
                &["github"],
            ),
            group("People Managers", "is_manager", &["lattice"]),
            group(
                "Contractors",
                "person.employment_type == \"CONTRACTOR\"",
                &[],
            ),
        ],
    }
}

/// Worker `i`'s hire: a tree of fan-out 8 under `E0000001`.
fn hire(i: usize, now_ms: i64) -> anyhow::Result<LifecycleEvent> {
    let id = format!("E{i:07}");
    let mut attributes = WorkerAttributes::new(
        format!("Given{i}"),
        format!("Family{}", i % 5_000),
        if i.is_multiple_of(10) {
            EmploymentType::Contractor
        } else {
            EmploymentType::Employee
        },
    );
    attributes.department = Some(DEPARTMENTS[i % DEPARTMENTS.len()].to_owned());
    attributes.work_email = Some(format!("given{i}@example.com"));
    attributes.manager_id = (i > 1)
        .then(|| EmployeeId::new(format!("E{:07}", (i - 2) / 8 + 1)))
        .transpose()?;
    let at = Timestamp::from_millis(now_ms - 86_400_000)?;
    Ok(LifecycleEvent::new(
        SourceSystem::new("hris")?,
        EmployeeId::new(id)?,
        at,
        at,
        TimeZone::new("Europe/Paris")?,
        LifecyclePayload::Hire(Hire { attributes }),
    )?)
}

async fn store(projector: &Projector, persons: usize) -> anyhow::Result<()> {
    let now = chrono::Utc::now().timestamp_millis();
    let mut events = Vec::with_capacity(1_000);
    for i in 1..=persons {
        events.push(hire(i, now)?);
        if events.len() == 1_000 || i == persons {
            let payloads: Vec<Vec<u8>> = events
                .iter()
                .map(hrsync_schema::encode_lifecycle)
                .collect::<Result<_, _>>()?;
            let incoming: Vec<Incoming<'_>> = events
                .iter()
                .zip(&payloads)
                .map(|(event, payload)| Incoming {
                    event: event.clone(),
                    payload,
                    traceparent: None,
                })
                .collect();
            projector.apply_batch(&incoming, &[], now).await?;
            events.clear();
        }
    }
    Ok(())
}

/// p50, p99 and max of `latencies`, in ms.
fn summary(name: &str, mut latencies: Vec<Duration>) -> String {
    latencies.sort();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1000.0
    };
    format!(
        "{name}: {} requests, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        at(0.50),
        at(0.99),
        at(1.0)
    )
}

async fn timed(http: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let answer = http.get(url).bearer_auth(token).send().await?;
    let status = answer.status();
    let body = answer.bytes().await?;
    anyhow::ensure!(
        status == 200,
        "GET {url}: {status} {}",
        String::from_utf8_lossy(&body)
    );
    Ok(started.elapsed())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pg = PgDatabase::fresh().await?;
    let db = Db::connect(pg.url(), 8).await?;
    db.migrate().await?;
    let config = ProjectorConfig {
        rules: rules(),
        ..ProjectorConfig::default()
    };
    let projector = Projector::new(db.clone(), config)?;
    let started = Instant::now();
    store(&projector, args.persons).await?;
    println!("stored {} persons in {:?}", args.persons, started.elapsed());

    let issuer = Issuer::start()?;
    let oauth = OAuthConfig::new(issuer.issuer(), HRSYNC_AUDIENCE);
    let scopes = oauth.scopes.clone();
    let verifier = Arc::new(Verifier::new(oauth.clone())?);
    let authorizer = Authorizer::oauth(verifier.clone());
    // The console's apps page lists the provisioner's dead letters.
    let broker = Broker::start()?;
    let kafka = broker.kafka_config();
    let topics = hrsync_bus::TopicsConfig::default();
    hrsync_bus::ensure_topics(
        &kafka,
        &[hrsync_bus::TopicSpec::new(&topics.provisioner_dlq, 1)],
    )
    .await?;
    let api = AdminApi {
        projector: Arc::new(Projector::new(
            db.clone(),
            ProjectorConfig {
                rules: rules(),
                ..ProjectorConfig::default()
            },
        )?),
        provisioner: Arc::new(
            Provisioner::new(db.clone(), &ProvisionerConfig::default(), None).await?,
        ),
        rules: rules(),
        ingest: hrsync_ingest::store::IngestStore::new(db.clone()),
        sources: Vec::new(),
        dead_letters: hrsync_admin::DeadLetters::new(kafka, topics, ProvisionerConfig::default()),
        hooks: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let origin = format!("http://{}", listener.local_addr()?);
    let base = format!("{origin}/api/v1");
    let routes = hrsync_admin::router(api, authorizer, &scopes);
    let console = hrsync_console::Console::new(
        hrsync_console::ConsoleConfig {
            client_id: "console".to_owned(),
            client_secret: None,
            public_url: origin.clone(),
            scopes: None,
            session_max_seconds: 3600,
            trace_url: None,
        },
        oauth,
        verifier,
        db.clone(),
        routes.clone(),
    )?;
    let routes = routes.merge(hrsync_console::router(console));
    tokio::spawn(async move { axum::serve(listener, routes).await });
    let token = issuer
        .token("viewer", "hrsync:read", HRSYNC_AUDIENCE)
        .await?;
    let http = reqwest::Client::new();
    let mut rng = rand::rng();
    let person = |rng: &mut rand::rngs::ThreadRng| {
        format!("{base}/persons/E{:07}", rng.random_range(1..=args.persons))
    };
    for _ in 0..100 {
        timed(&http, &person(&mut rng), &token).await?;
    }
    let mut lookups = Vec::with_capacity(args.requests);
    for _ in 0..args.requests {
        lookups.push(timed(&http, &person(&mut rng), &token).await?);
    }
    println!("{}", summary("person lookup", lookups));
    let mut by_name = Vec::new();
    let mut by_group = Vec::new();
    for _ in 0..args.requests / 4 {
        let name = format!(
            "{base}/persons?q=family{}&limit=50",
            rng.random_range(0..5_000)
        );
        by_name.push(timed(&http, &name, &token).await?);
        let department = DEPARTMENTS[rng.random_range(0..DEPARTMENTS.len())].replace(' ', "%20");
        let group = format!("{base}/persons?group={department}&lifecycle=ACTIVE&limit=50");
        by_group.push(timed(&http, &group, &token).await?);
    }
    println!("{}", summary("search by name", by_name));
    println!("{}", summary("search by group", by_group));
    // A rules preview evaluates every stored person under both rule sets:
    // Customer Support moved to another department. (No app is declared
    // here, so the proposal grants none.)
    let mut proposed = rules();
    proposed.groups[1].rule = "person.department == \"Sales\"".to_owned();
    for group in &mut proposed.groups {
        group.apps.clear();
    }
    let mut previews = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let answer = http
            .post(format!("{base}/rules/preview"))
            .bearer_auth(&token)
            .json(&proposed)
            .send()
            .await?;
        anyhow::ensure!(answer.status() == 200, "preview: {}", answer.status());
        let preview: serde_json::Value = answer.json().await?;
        previews.push(started.elapsed());
        println!(
            "rules preview: {} persons evaluated, {} would change, in {:?}",
            preview["persons"],
            preview["persons_changed"],
            started.elapsed()
        );
    }
    println!("{}", summary("rules preview", previews));
    console_pages(&http, &origin, args.persons, args.requests / 4).await
}

/// What a console page reads through the API, given a random source and
/// the number of persons stored.
type PageReads = fn(&mut rand::rngs::ThreadRng, usize) -> Vec<String>;

/// Each console page as the browser loads it, one request after another:
/// the app's page and script, the session, then what the page reads through
/// the console's API (proxied with the session's token).
async fn console_pages(
    http: &reqwest::Client,
    origin: &str,
    persons: usize,
    loads: usize,
) -> anyhow::Result<()> {
    let cookie = hrsync_tests::console_sign_in(origin, "ada").await?;
    let mut rng = rand::rng();
    let pages: [(&str, PageReads); 7] = [
        ("people search", |rng, _| {
            vec![format!(
                "persons?q=family{}&limit=50",
                rng.random_range(0..5_000)
            )]
        }),
        ("person", |rng, persons| {
            vec![format!("persons/E{:07}", rng.random_range(1..=persons))]
        }),
        ("apps", |_, _| {
            vec!["apps".to_owned(), "dlq/provisioner?limit=20".to_owned()]
        }),
        ("terminations", |_, _| vec!["terminations".to_owned()]),
        ("provisioning log", |_, _| vec!["audit?limit=50".to_owned()]),
        ("imports", |_, _| vec!["imports".to_owned()]),
        ("rules", |_, _| vec!["rules".to_owned()]),
    ];
    for (name, reads) in pages {
        let mut latencies = Vec::with_capacity(loads);
        for _ in 0..loads {
            let started = Instant::now();
            let mut urls = vec![
                format!("{origin}/console/"),
                format!("{origin}/console/assets/main.js"),
                format!("{origin}/console/session"),
            ];
            urls.extend(
                reads(&mut rng, persons)
                    .into_iter()
                    .map(|read| format!("{origin}/console/api/v1/{read}")),
            );
            for url in urls {
                let answer = http
                    .get(&url)
                    .header(reqwest::header::COOKIE, &cookie)
                    .send()
                    .await?;
                let status = answer.status();
                answer.bytes().await?;
                anyhow::ensure!(status == 200, "GET {url}: {status}");
            }
            latencies.push(started.elapsed());
        }
        println!("{}", summary(&format!("console page {name}"), latencies));
    }
    Ok(())
}
