//! The projector's store on both backends, driven through its library API
//! (`Projector::apply_batch`) without Kafka: concurrency with other
//! writers, direct-report counts and manager chains.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hrsync_domain::{
    Attribute, AttributeChange, EmployeeId, EmploymentType, Hire, LifecycleEvent, LifecyclePayload,
    Move, SourceSystem, Terminate, TimeZone, Timestamp, WorkerAttributes,
};
use hrsync_projector::config::ProjectorConfig;
use hrsync_projector::project::{BatchOutcome, Incoming, Projector};
use hrsync_projector::rules::{GroupConfig, RulesConfig};
use hrsync_projector::state::PersonState;
use hrsync_store::{Claim, Db};
use hrsync_tests::{PgDatabase, SqliteFile};
use sqlx::Row as _;
use tokio::sync::Notify;

const DAY: i64 = 86_400_000;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn event(employee: &str, effective: i64, payload: LifecyclePayload) -> LifecycleEvent {
    LifecycleEvent::new(
        SourceSystem::new("workday").unwrap(),
        EmployeeId::new(employee).unwrap(),
        Timestamp::from_millis(now_ms()).unwrap(),
        Timestamp::from_millis(effective).unwrap(),
        TimeZone::new("Europe/Berlin").unwrap(),
        payload,
    )
    .unwrap()
}

fn hire(employee: &str, manager: Option<&str>) -> LifecycleEvent {
    let mut attributes = WorkerAttributes::new("Given", "Family", EmploymentType::Employee);
    attributes.department = Some("Sales".to_owned());
    attributes.manager_id = manager.map(|m| EmployeeId::new(m).unwrap());
    event(
        employee,
        now_ms() - DAY,
        LifecyclePayload::Hire(Hire { attributes }),
    )
}

fn terminate_now(employee: &str) -> LifecycleEvent {
    event(
        employee,
        now_ms(),
        LifecyclePayload::Terminate(Terminate {
            immediate: true,
            last_day_worked: None,
            reason: None,
        }),
    )
}

fn moving(employee: &str, effective: i64, change: AttributeChange) -> LifecycleEvent {
    event(
        employee,
        effective,
        LifecyclePayload::Move(Move {
            changes: vec![change],
        }),
    )
}

/// `employee` now reports to `manager` (`None`: to nobody).
fn manager_move(employee: &str, manager: Option<&str>) -> LifecycleEvent {
    let change = match manager {
        Some(m) => AttributeChange::set(Attribute::ManagerId, m),
        None => AttributeChange::clear(Attribute::ManagerId),
    };
    moving(employee, a_second_ago(), change)
}

/// A second ago, but after every time this returned before: moves built
/// within one millisecond would tie on effective time, and the fold breaks
/// a tie by event id, so the later one could lose.
fn a_second_ago() -> i64 {
    static LAST_MS: AtomicI64 = AtomicI64::new(i64::MIN);
    let wanted = now_ms() - 1000;
    let next = |last: i64| wanted.max(last.saturating_add(1));
    let last = LAST_MS
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(next(last))
        })
        .expect("the update always stores");
    next(last)
}

fn title_move(employee: &str, title: &str) -> LifecycleEvent {
    moving(
        employee,
        a_second_ago(),
        AttributeChange::set(Attribute::Title, title),
    )
}

/// A projector over a migrated store with these `(group, rule)`s, each
/// granting an app of the group's name.
async fn projector(url: &str, rules: &[(&str, &str)]) -> anyhow::Result<Projector> {
    let db = Db::connect(url, 4).await?;
    db.migrate().await?;
    let config = ProjectorConfig {
        rules: RulesConfig {
            groups: rules
                .iter()
                .map(|(name, rule)| GroupConfig {
                    name: (*name).to_owned(),
                    rule: (*rule).to_owned(),
                    apps: vec![name.to_lowercase()],
                    description: None,
                    previous_names: Vec::new(),
                })
                .collect(),
        },
        ..ProjectorConfig::default()
    };
    Ok(Projector::new(db, config)?)
}

/// Where a test's projector reads the reporting lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lines {
    /// From the store, in each batch's transaction.
    Stored,
    /// From memory, as the projector holding the store's claim does.
    InMemory,
}

/// A projector as [`projector`] makes one, reading the reporting lines as
/// `lines` says; in memory, with the store's claim it holds (kept as long
/// as the projector is used).
async fn projector_with(
    url: &str,
    rules: &[(&str, &str)],
    lines: Lines,
) -> anyhow::Result<(Projector, Option<Claim>)> {
    let p = projector(url, rules).await?;
    Ok(match lines {
        Lines::Stored => (p, None),
        Lines::InMemory => {
            let claim = p
                .db()
                .try_claim("projector")
                .await?
                .expect("the store is free");
            (p.with_store_to_itself(&claim), Some(claim))
        }
    })
}

/// The reporting lines a projector keeps in memory are those stored.
async fn assert_lines_kept(projector: &Projector) -> anyhow::Result<()> {
    assert_eq!(projector.reporting_lines_differ().await?, None);
    Ok(())
}

/// Applies `events` as one batch.
async fn apply(projector: &Projector, events: &[LifecycleEvent]) -> anyhow::Result<BatchOutcome> {
    apply_within(projector, events, 1).await
}

/// Applies `events` as one batch, again while another writer's commit
/// conflicts with it (as the running projector does; it also takes a
/// priority batch that conflicted through the write gate, where nothing
/// runs beside it, which these writers do not have).
async fn apply_retrying(
    projector: &Projector,
    events: &[LifecycleEvent],
) -> anyhow::Result<BatchOutcome> {
    apply_within(projector, events, 100).await
}

/// Applies `events` as one batch, in at most `attempts` attempts (the last
/// attempt's error is returned, saying which attempt it was). A conflict
/// is retried after a pause that grows with the attempts, 1 to 20 ms:
/// retried at once, writers that keep conflicting with each other could
/// all lose every time (seen here: 100 attempts of one batch failing on a
/// loaded machine).
async fn apply_within(
    projector: &Projector,
    events: &[LifecycleEvent],
    attempts: usize,
) -> anyhow::Result<BatchOutcome> {
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
    let mut attempt = 1;
    loop {
        match projector.apply_batch(&incoming, &[], now_ms()).await {
            Ok(outcome) => return Ok(outcome),
            Err(error) if error.is_conflict() && attempt < attempts => {
                tokio::time::sleep(std::time::Duration::from_millis(attempt.min(20) as u64)).await;
                attempt += 1;
            }
            Err(error) if attempts > 1 => {
                return Err(
                    anyhow::Error::from(error).context(format!("attempt {attempt} of {attempts}"))
                )
            }
            Err(error) => return Err(error.into()),
        }
    }
}

const EVERYONE: &[(&str, &str)] = &[("Everyone", "true")];

/// SQLite has one writer. A batch that starts while another connection
/// holds the write lock waits for it (`busy_timeout`) and then succeeds at
/// the first attempt. (With a deferred `BEGIN`, the batch read first and
/// failed at its first write with `SQLITE_BUSY` or `SQLITE_BUSY_SNAPSHOT`,
/// "database is locked": a retry with back-off, which is how an immediate
/// termination once took 22.8 s behind the main lane.)
#[tokio::test(flavor = "multi_thread")]
async fn sqlite_batch_waits_for_the_writer_instead_of_failing() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    let projector = projector(&file.url(), EVERYONE).await?;
    apply(&projector, &[hire("E1", None)]).await?;

    // Another writer (the main lane's batch, the outbox publisher, another
    // process) holds the lock for a while, then commits.
    let other = Db::connect(&file.url(), 1).await?;
    let mut holding = other.begin_write().await?;
    sqlx::query("INSERT INTO projector_meta (name, value) VALUES ('other writer', 'x')")
        .execute(&mut *holding)
        .await?;
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        holding.commit().await
    });

    let outcome = apply(&projector, &[terminate_now("E1")]).await;
    release.await??;
    outcome.expect("the termination is applied at the first attempt");
    let person = projector.person("E1").await?.expect("stored");
    assert_eq!(person.lifecycle.as_deref(), Some("DEPROVISIONED"));
    Ok(())
}

/// The last emitted groups of a person.
async fn groups(projector: &Projector, employee: &str) -> anyhow::Result<Vec<String>> {
    Ok(projector
        .person(employee)
        .await?
        .map(|p| p.groups)
        .unwrap_or_default())
}

async fn revision(projector: &Projector, employee: &str) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT revision FROM projector_person WHERE employee_id = $1")
            .bind(employee)
            .fetch_one(projector.db().pool())
            .await?,
    )
}

/// The kept direct-report counts equal a count over the stored persons.
async fn assert_report_counts_add_up(projector: &Projector) -> anyhow::Result<()> {
    let kept: BTreeMap<String, i64> =
        sqlx::query("SELECT manager_id, reports FROM projector_reports WHERE reports <> 0")
            .fetch_all(projector.db().pool())
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<anyhow::Result<_>>()?;
    let counted: BTreeMap<String, i64> = sqlx::query(
        "SELECT manager_id, CAST(COUNT(*) AS BIGINT) FROM projector_person WHERE manager_id IS NOT NULL \
         AND lifecycle <> 'DEPROVISIONED' AND lifecycle <> 'NONE' GROUP BY manager_id",
    )
    .fetch_all(projector.db().pool())
    .await?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect::<anyhow::Result<_>>()?;
    assert_eq!(kept, counted, "kept direct-report counts");
    Ok(())
}

/// Every stored person's folded state and last emitted result (JSON), by
/// employee id; versions left out (how many changes were emitted on the way
/// depends on how the log was cut into batches).
async fn states(projector: &Projector) -> anyhow::Result<BTreeMap<String, (String, String)>> {
    Ok(projector
        .dump()
        .await?
        .into_iter()
        .map(|(id, (_, state, emitted))| (id, (state, emitted)))
        .collect())
}

/// Evaluates everyone again from the stored state, as after a rules
/// change, and returns how many desired states that changed: 0 when every
/// emitted state was up to date.
async fn reevaluate_everyone(projector: &Projector) -> anyhow::Result<usize> {
    sqlx::query("DELETE FROM projector_meta WHERE name = 'rules_fingerprint'")
        .execute(projector.db().pool())
        .await?;
    Ok(projector
        .reevaluate_if_rules_changed(now_ms())
        .await?
        .unwrap_or(0))
}

const MANAGER_RULES: &[(&str, &str)] = &[
    ("Managers", "is_manager"),
    ("Big Teams", "direct_reports >= 2"),
    ("Under E1", r#""E1" in manager_chain"#),
];

/// Direct reports are counted as persons are hired, move, leave, and as
/// time makes a dated termination effective; a manager is re-evaluated when
/// their count changes, and only then.
async fn direct_reports(url: &str, lines: Lines) -> anyhow::Result<()> {
    let (p, _claim) = projector_with(url, MANAGER_RULES, lines).await?;
    apply(&p, &[hire("M", None), hire("R1", Some("M"))]).await?;
    assert_eq!(groups(&p, "M").await?, ["Managers"]);
    apply(&p, &[hire("R2", Some("M"))]).await?;
    assert_eq!(groups(&p, "M").await?, ["Big Teams", "Managers"]);
    assert_report_counts_add_up(&p).await?;

    // A report's title changes: the manager's count does not, so the
    // manager is neither re-evaluated nor written.
    let before = revision(&p, "M").await?;
    apply(&p, &[title_move("R1", "Senior Rep")]).await?;
    assert_eq!(revision(&p, "M").await?, before, "M is not rewritten");

    // A report leaves, another moves to another manager.
    apply(&p, &[terminate_now("R1")]).await?;
    assert_eq!(groups(&p, "M").await?, ["Managers"]);
    apply(&p, &[hire("M2", None), manager_move("R2", Some("M2"))]).await?;
    assert_eq!(groups(&p, "M").await?, Vec::<String>::new());
    assert_eq!(groups(&p, "M2").await?, ["Managers"]);
    assert_report_counts_add_up(&p).await?;

    // Reports hired before their manager: counted from the manager's hire.
    apply(&p, &[hire("R3", Some("M3")), hire("R4", Some("M3"))]).await?;
    apply(&p, &[hire("M3", None)]).await?;
    assert_eq!(groups(&p, "M3").await?, ["Big Teams", "Managers"]);

    // A dated termination takes effect by the clock (the timer's pass).
    let now = now_ms();
    apply(
        &p,
        &[event(
            "R4",
            now + 3_600_000,
            LifecyclePayload::Terminate(Terminate {
                immediate: false,
                last_day_worked: None,
                reason: None,
            }),
        )],
    )
    .await?;
    assert_eq!(groups(&p, "M3").await?, ["Big Teams", "Managers"]);
    p.run_due(now + 2 * 3_600_000).await?;
    assert_eq!(groups(&p, "M3").await?, ["Managers"]);
    assert_report_counts_add_up(&p).await?;
    assert_lines_kept(&p).await
}

#[tokio::test(flavor = "multi_thread")]
async fn direct_reports_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    direct_reports(db.url(), Lines::Stored).await
}

#[tokio::test(flavor = "multi_thread")]
async fn direct_reports_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    direct_reports(&file.url(), Lines::Stored).await
}

#[tokio::test(flavor = "multi_thread")]
async fn direct_reports_in_memory_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    direct_reports(db.url(), Lines::InMemory).await
}

#[tokio::test(flavor = "multi_thread")]
async fn direct_reports_in_memory_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    direct_reports(&file.url(), Lines::InMemory).await
}

/// An event repeats one stored with the same id for the same person, in
/// the same batch or a later one. The same id for another person (a
/// producer's bug) is that person's event, not a repeat of someone else's.
async fn an_event_repeats_only_for_its_person(url: &str) -> anyhow::Result<()> {
    let p = projector(url, EVERYONE).await?;
    let first = hire("E1", None);
    let mut reused = hire("E2", None);
    reused.event_id = first.event_id.clone();

    let outcome = apply(&p, &[first.clone(), reused.clone(), first.clone()]).await?;
    assert_eq!((outcome.applied, outcome.duplicates), (2, 1));
    let outcome = apply(&p, &[reused, first]).await?;
    assert_eq!((outcome.applied, outcome.duplicates), (0, 2));
    assert_eq!(groups(&p, "E1").await?, ["Everyone"]);
    assert_eq!(groups(&p, "E2").await?, ["Everyone"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_repeats_only_for_its_person_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    an_event_repeats_only_for_its_person(db.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_repeats_only_for_its_person_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    an_event_repeats_only_for_its_person(&file.url()).await
}

/// Only the binary state is read: a state in any other form (the JSON of
/// early development builds, never released) is reported as unreadable,
/// naming the person, not taken for an empty one.
async fn a_state_not_in_the_binary_form_is_unreadable(url: &str) -> anyhow::Result<()> {
    let p = projector(url, EVERYONE).await?;
    let config = ProjectorConfig::default();
    let state = PersonState::fold("E1", [&hire("E1", Some("M1"))], &config.attribute_sources);
    let json = serde_json::to_vec(&state)?;
    sqlx::query(
        "INSERT INTO projector_person (employee_id, person_id, revision, version, state, lifecycle, \
         manager_id, next_check_at_ms, emitted, updated_at_ms) \
         VALUES ('E1', $1, 1, 0, $2, 'ACTIVE', 'M1', NULL, $3, $4)",
    )
    .bind(hrsync_projector::project::person_id_of("E1"))
    .bind(json.as_slice())
    .bind(r#"{"digest":"","lifecycle":null,"groups":[],"apps":[]}"#)
    .bind(now_ms())
    .execute(p.db().pool())
    .await?;
    let unreadable = "stored state of E1 is unreadable: unknown state format 123";
    assert_eq!(p.dump().await.expect_err("JSON").to_string(), unreadable);
    assert_eq!(
        p.person("E1").await.expect_err("JSON").to_string(),
        unreadable
    );
    let error = apply(&p, &[title_move("E1", "Lead")])
        .await
        .expect_err("JSON");
    assert_eq!(error.to_string(), unreadable);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_not_in_the_binary_form_is_unreadable_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    a_state_not_in_the_binary_form_is_unreadable(db.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_not_in_the_binary_form_is_unreadable_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    a_state_not_in_the_binary_form_is_unreadable(&file.url()).await
}

/// The conflict a batch failed with, as text (`why`: why it must fail).
fn conflict(result: anyhow::Result<BatchOutcome>, why: &str) -> String {
    let error = result.expect_err(why);
    let error = error
        .downcast_ref::<hrsync_projector::project::ProjectError>()
        .expect("a projector error");
    assert!(error.is_conflict(), "{error}");
    error.to_string()
}

/// The stored attributes of a hired person.
async fn attributes(projector: &Projector, employee: &str) -> anyhow::Result<WorkerAttributes> {
    Ok(projector
        .person(employee)
        .await?
        .and_then(|view| view.state.attributes)
        .expect("hired"))
}

/// A projector keeps the persons it committed in memory. One written
/// meanwhile by another writer of the store (here a second projector, as a
/// second process would) is stale there: the batch that uses it fails with
/// a conflict instead of writing over the other's change, and its retry
/// reads the person from the store.
async fn a_stale_cached_person_is_read_again(url: &str) -> anyhow::Result<()> {
    let a = projector(url, EVERYONE).await?;
    let b = projector(url, EVERYONE).await?;
    apply(&a, &[hire("E1", None)]).await?;
    apply(&b, &[title_move("E1", "Lead")]).await?;
    let department = moving(
        "E1",
        now_ms() - 500,
        AttributeChange::set(Attribute::Department, "Support"),
    );
    conflict(
        apply(&a, std::slice::from_ref(&department)).await,
        "a's cached E1 is older than the stored one",
    );
    assert_eq!(apply(&a, &[department]).await?.applied, 1);

    let attributes = attributes(&a, "E1").await?;
    assert_eq!(attributes.title.as_deref(), Some("Lead"));
    assert_eq!(attributes.department.as_deref(), Some("Support"));
    assert_eq!(revision(&a, "E1").await?, 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_cached_person_is_read_again_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    a_stale_cached_person_is_read_again(db.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_cached_person_is_read_again_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    a_stale_cached_person_is_read_again(&file.url()).await
}

/// Persons below a moved manager are evaluated again although nothing
/// about them changed, and most are found unchanged and not written back.
/// So they are read from the store, not from the rows the projector keeps
/// in memory: a kept row can be stale (written meanwhile by another
/// writer), and no revision check on a write would catch it. Here R's kept
/// row has no title; evaluated from it, R would stay out of the group.
async fn a_person_below_a_moved_manager_is_evaluated_as_stored(url: &str) -> anyhow::Result<()> {
    const RULES: &[(&str, &str)] = &[(
        "Leads under T",
        r#"person.title == "Lead" && "T" in manager_chain"#,
    )];
    let a = projector(url, RULES).await?;
    let b = projector(url, RULES).await?;
    apply(
        &a,
        &[
            hire("T", None),
            hire("M", None),
            hire("R", Some("M")),
            hire("S", Some("M")),
        ],
    )
    .await?;
    apply(&b, &[title_move("R", "Lead")]).await?;
    apply(&a, &[title_move("S", "Lead")]).await?;
    for id in ["R", "S"] {
        assert!(groups(&a, id).await?.is_empty(), "{id} is not under T yet");
    }

    apply(&a, &[manager_move("M", Some("T"))]).await?;
    for id in ["R", "S"] {
        assert_eq!(groups(&a, id).await?, ["Leads under T"], "{id}");
    }
    assert_eq!(reevaluate_everyone(&a).await?, 0, "nothing left stale");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_below_a_moved_manager_is_evaluated_as_stored_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    a_person_below_a_moved_manager_is_evaluated_as_stored(db.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_below_a_moved_manager_is_evaluated_as_stored_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    a_person_below_a_moved_manager_is_evaluated_as_stored(&file.url()).await
}

/// An event is folded into a cached person while the store is still
/// storing it, when it sorts after everything folded into that person
/// (it cannot have been stored: see `hrsync_projector`'s `store::events`). When the
/// cached person is stale and the event was in fact stored by another
/// writer, the batch fails with a conflict as soon as the store says so,
/// and its retry finds the event stored already and folds nothing twice.
async fn an_event_another_writer_stored_is_not_folded_twice(url: &str) -> anyhow::Result<()> {
    let a = projector(url, EVERYONE).await?;
    let b = projector(url, EVERYONE).await?;
    apply(&a, &[hire("E1", None)]).await?;
    let promotion = title_move("E1", "Lead");
    apply(&b, std::slice::from_ref(&promotion)).await?;
    let outbox = a.outbox(100).await?.len();

    let error = conflict(
        apply(&a, std::slice::from_ref(&promotion)).await,
        "a's cached E1 lacks the promotion b stored",
    );
    assert!(error.contains("was stored already"), "{error}");
    let retried = apply(&a, &[promotion]).await?;
    assert_eq!(
        (retried.applied, retried.duplicates, retried.changes),
        (0, 1, 0)
    );
    assert_eq!(revision(&a, "E1").await?, 2);
    assert_eq!(a.outbox(100).await?.len(), outbox);
    let attributes = attributes(&a, "E1").await?;
    assert_eq!(attributes.title.as_deref(), Some("Lead"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_another_writer_stored_is_not_folded_twice_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    an_event_another_writer_stored_is_not_folded_twice(db.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_another_writer_stored_is_not_folded_twice_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    an_event_another_writer_stored_is_not_folded_twice(&file.url()).await
}

/// The counts of persons found in the person cache and read from the
/// store (`hrsync_projector_person_cache_total`) in `/metrics` text.
fn person_cache_counts(text: &str) -> (u64, u64) {
    let count = |outcome: &str| {
        text.lines()
            .find(|line| {
                line.starts_with("hrsync_projector_person_cache_total{")
                    && line.contains(&format!("outcome=\"{outcome}\""))
            })
            .and_then(|line| line.rsplit(' ').next())
            .map_or(0, |n| n.parse().unwrap_or(0))
    };
    (count("hit"), count("miss"))
}

#[tokio::test(flavor = "multi_thread")]
async fn person_cache_hits_and_misses_are_counted() -> anyhow::Result<()> {
    let metrics = hrsync_telemetry::init_for_tests();
    let file = SqliteFile::new()?;
    let p = projector(&file.url(), EVERYONE).await?;
    let (hits, misses) = person_cache_counts(&metrics.render());
    apply(&p, &[hire("E1", None), hire("E2", None)]).await?;
    apply(&p, &[title_move("E1", "Lead")]).await?;
    let (hits_after, misses_after) = person_cache_counts(&metrics.render());
    assert_eq!((hits_after - hits, misses_after - misses), (1, 2));
    Ok(())
}

/// A rebuild in the same process as the batches before it (as `hrsync
/// projector rebuild` runs): the replay starts from an empty store, not
/// from the persons cached before, and the batches after it continue the
/// versions raised at its end, not those of the replay.
async fn a_rebuild_starts_and_ends_without_cached_persons(url: &str) -> anyhow::Result<()> {
    let p = projector(url, EVERYONE).await?;
    let hired = hire("E1", None);
    apply(&p, std::slice::from_ref(&hired)).await?;
    apply(&p, &[title_move("E1", "Lead")]).await?;
    apply(&p, &[title_move("E1", "Director")]).await?;
    assert_eq!(p.person("E1").await?.expect("E1").version, 3);

    p.begin_rebuild().await?;
    // (This log is the hire alone.)
    apply(&p, &[hired]).await?;
    assert_eq!(revision(&p, "E1").await?, 1);
    p.finish_rebuild().await?;
    assert_eq!(p.person("E1").await?.expect("E1").version, 3);

    apply(&p, &[title_move("E1", "Head")]).await?;
    let view = p.person("E1").await?.expect("E1");
    assert_eq!(view.version, 4);
    assert_eq!(
        view.state.attributes.and_then(|a| a.title).as_deref(),
        Some("Head")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebuild_starts_and_ends_without_cached_persons_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    a_rebuild_starts_and_ends_without_cached_persons(db.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebuild_starts_and_ends_without_cached_persons_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    a_rebuild_starts_and_ends_without_cached_persons(&file.url()).await
}

/// When someone's manager changes, everyone below them has a new manager
/// chain: rules reading `manager_chain` are evaluated again for them, down
/// to the chain depth.
async fn manager_chain_changes_cascade(url: &str, lines: Lines) -> anyhow::Result<()> {
    let (p, _claim) = projector_with(url, MANAGER_RULES, lines).await?;
    apply(
        &p,
        &[
            hire("E1", None),
            hire("E2", None),
            hire("A", Some("E2")),
            hire("B", Some("A")),
            hire("C", Some("B")),
        ],
    )
    .await?;
    for id in ["E2", "A", "B", "C"] {
        assert!(
            !groups(&p, id).await?.contains(&"Under E1".to_owned()),
            "{id}"
        );
    }

    // E2 moves under E1: E2, A, B and C are all under E1 now. D, hired
    // under C in the same batch, too.
    apply(&p, &[manager_move("E2", Some("E1")), hire("D", Some("C"))]).await?;
    for id in ["E2", "A", "B", "C", "D"] {
        assert!(
            groups(&p, id).await?.contains(&"Under E1".to_owned()),
            "{id}"
        );
    }
    assert_eq!(reevaluate_everyone(&p).await?, 0, "nothing left stale");

    // B moves out from under A to nobody: B, C and D leave the group.
    apply(&p, &[manager_move("B", None)]).await?;
    for (id, under) in [
        ("E2", true),
        ("A", true),
        ("B", false),
        ("C", false),
        ("D", false),
    ] {
        assert_eq!(
            groups(&p, id).await?.contains(&"Under E1".to_owned()),
            under,
            "{id}"
        );
    }
    assert_eq!(reevaluate_everyone(&p).await?, 0, "nothing left stale");
    assert_report_counts_add_up(&p).await?;
    assert_lines_kept(&p).await
}

#[tokio::test(flavor = "multi_thread")]
async fn manager_chain_changes_cascade_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    manager_chain_changes_cascade(db.url(), Lines::Stored).await
}

#[tokio::test(flavor = "multi_thread")]
async fn manager_chain_changes_cascade_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    manager_chain_changes_cascade(&file.url(), Lines::Stored).await
}

#[tokio::test(flavor = "multi_thread")]
async fn manager_chain_changes_cascade_in_memory_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    manager_chain_changes_cascade(db.url(), Lines::InMemory).await
}

#[tokio::test(flavor = "multi_thread")]
async fn manager_chain_changes_cascade_in_memory_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    manager_chain_changes_cascade(&file.url(), Lines::InMemory).await
}

/// A workload of 150 people in a reporting tree: hires (some before their
/// manager), title and manager moves (reorgs at every level), terminations
/// and rehires, all effective in the past, in a fixed pseudo-random order.
fn org_workload() -> Vec<LifecycleEvent> {
    let base = now_ms() - 20 * DAY;
    let mut seed: u64 = 0x5eed;
    let mut next = move |n: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) % n
    };
    let id = |i: u64| format!("P{i:03}");
    let mut events = Vec::new();
    let mut at = base;
    let mut tick = || {
        at += 60_000;
        at
    };
    for i in 0..150 {
        // Mostly in tree order; every 7th person is hired before their
        // manager (under someone later).
        let manager = match i {
            0 => None,
            _ if i % 7 == 0 => Some(id((i + 1 + next(20)).min(149))),
            _ => Some(id((i - 1) / 3)),
        };
        let mut attributes = WorkerAttributes::new("Given", "Family", EmploymentType::Employee);
        attributes.title = Some(if i % 5 == 0 { "Manager" } else { "Rep" }.to_owned());
        attributes.manager_id = manager.map(|m| EmployeeId::new(m).unwrap());
        events.push(event(
            &id(i),
            tick(),
            LifecyclePayload::Hire(Hire { attributes }),
        ));
    }
    for _ in 0..300 {
        let who = next(150);
        let event = match next(10) {
            0..=3 => {
                let title = if next(2) == 0 { "Manager" } else { "Rep" };
                moving(
                    &id(who),
                    tick(),
                    AttributeChange::set(Attribute::Title, title),
                )
            }
            4..=7 => {
                let manager = next(150);
                let change = if manager == who {
                    AttributeChange::clear(Attribute::ManagerId)
                } else {
                    AttributeChange::set(Attribute::ManagerId, id(manager))
                };
                moving(&id(who), tick(), change)
            }
            8 => event(
                &id(who),
                tick(),
                LifecyclePayload::Terminate(Terminate {
                    immediate: false,
                    last_day_worked: None,
                    reason: None,
                }),
            ),
            _ => {
                let mut attributes =
                    WorkerAttributes::new("Given", "Family", EmploymentType::Employee);
                attributes.manager_id = Some(EmployeeId::new(id(next(150))).unwrap());
                event(
                    &id(who),
                    tick(),
                    LifecyclePayload::Rehire(hrsync_domain::Rehire { attributes }),
                )
            }
        };
        events.push(event);
    }
    events
}

/// However the log is cut into batches, the store ends the same, every
/// emitted state is what evaluating everyone afresh gives, and the kept
/// report counts add up. One event per batch reads the reporting lines from
/// the store, 64 from memory.
async fn batching_does_not_matter(
    one: &str,
    other: &str,
    rules: &[(&str, &str)],
) -> anyhow::Result<()> {
    let events = org_workload();
    let a = projector(one, rules).await?;
    for chunk in events.chunks(1) {
        apply(&a, chunk).await?;
    }
    let (b, _claim) = projector_with(other, rules, Lines::InMemory).await?;
    for chunk in events.chunks(64) {
        apply(&b, chunk).await?;
    }
    for p in [&a, &b] {
        assert_eq!(reevaluate_everyone(p).await?, 0, "nothing left stale");
        assert_report_counts_add_up(p).await?;
    }
    assert_lines_kept(&b).await?;
    let (a, b) = (states(&a).await?, states(&b).await?);
    assert_eq!(a.len(), 150);
    assert_eq!(a, b, "one event per batch vs 64");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn batching_does_not_matter_postgres_and_sqlite() -> anyhow::Result<()> {
    batching_does_not_matter_either_way(MANAGER_RULES).await
}

/// [`batching_does_not_matter`] with one event per batch on PostgreSQL and
/// 64 on SQLite, then the other way round.
async fn batching_does_not_matter_either_way(rules: &[(&str, &str)]) -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    let file = SqliteFile::new()?;
    batching_does_not_matter(db.url(), &file.url(), rules).await?;
    let db = PgDatabase::fresh().await?;
    let file = SqliteFile::new()?;
    batching_does_not_matter(&file.url(), db.url(), rules).await
}

/// Rules that read `is_manager` but not the count: a manager is evaluated
/// again only when their count crosses zero, and nothing is left stale.
#[tokio::test(flavor = "multi_thread")]
async fn batching_does_not_matter_when_only_is_manager_is_read() -> anyhow::Result<()> {
    const IS_MANAGER_RULES: &[(&str, &str)] = &[
        ("Managers", "is_manager"),
        (
            "Manager Titles",
            r#"is_manager && person.title == "Manager""#,
        ),
    ];
    batching_does_not_matter_either_way(IS_MANAGER_RULES).await
}

/// `events` as they might arrive: each moved up to nine places later, and
/// every ninth one repeated up to thirty places after it (in a fixed
/// pseudo-random order).
fn out_of_order_with_repeats(events: &[LifecycleEvent]) -> Vec<LifecycleEvent> {
    let mut seed: u64 = 0xfeed;
    let mut next = move |n: usize| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        usize::try_from(seed >> 33).unwrap_or(0) % n
    };
    let mut arriving = events.to_vec();
    for i in 0..arriving.len() {
        let j = (i + next(10)).min(arriving.len() - 1);
        arriving.swap(i, j);
    }
    for (n, event) in events.iter().enumerate().filter(|(n, _)| n % 9 == 0) {
        let at = (n + 1 + next(30)).min(arriving.len());
        arriving.insert(at, event.clone());
    }
    arriving
}

/// The org workload arriving out of order and with repeats, in batches of
/// 50 to a projector that keeps its persons and reporting lines in memory,
/// ends as the same workload applied in order: batches fold some events
/// into cached persons while the store is still storing them, refold the
/// persons whose events arrive late, and drop the repeats.
async fn arrival_order_and_repeats_do_not_matter(one: &str, other: &str) -> anyhow::Result<()> {
    let events = org_workload();
    let arriving = out_of_order_with_repeats(&events);
    let a = projector(one, MANAGER_RULES).await?;
    for chunk in events.chunks(64) {
        apply(&a, chunk).await?;
    }
    let (b, _claim) = projector_with(other, MANAGER_RULES, Lines::InMemory).await?;
    let (mut applied, mut duplicates) = (0, 0);
    for chunk in arriving.chunks(50) {
        let outcome = apply(&b, chunk).await?;
        applied += outcome.applied;
        duplicates += outcome.duplicates;
    }
    assert_eq!(applied, events.len());
    assert_eq!(duplicates, arriving.len() - events.len());
    for p in [&a, &b] {
        assert_eq!(reevaluate_everyone(p).await?, 0, "nothing left stale");
        assert_report_counts_add_up(p).await?;
    }
    assert_lines_kept(&b).await?;
    assert_eq!(
        states(&a).await?,
        states(&b).await?,
        "in order vs as arrived"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn arrival_order_and_repeats_do_not_matter_postgres_and_sqlite() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    let file = SqliteFile::new()?;
    arrival_order_and_repeats_do_not_matter(db.url(), &file.url()).await?;
    let db = PgDatabase::fresh().await?;
    let file = SqliteFile::new()?;
    arrival_order_and_repeats_do_not_matter(&file.url(), db.url()).await
}

/// The publisher finds the priority copies not yet sent without reading
/// the rows ahead of them; once sent, the rows wait for the main topic.
async fn priority_copies_go_first(url: &str) -> anyhow::Result<()> {
    let p = projector(url, EVERYONE).await?;
    let hires: Vec<LifecycleEvent> = (0..30).map(|i| hire(&format!("H{i}"), None)).collect();
    apply(&p, &hires).await?;
    apply(&p, &[terminate_now("H7")]).await?;
    apply(&p, &[hire("LATE", None)]).await?;
    let urgent = p.outbox_priority(10).await?;
    assert_eq!(urgent.len(), 1);
    let change = hrsync_schema::decode_directory_change(&urgent[0].payload)?;
    assert_eq!(change.employee_id.as_str(), "H7");
    p.priority_sent(&[urgent[0].seq]).await?;
    assert!(p.outbox_priority(10).await?.is_empty());
    let all = p.outbox(100).await?;
    assert_eq!(all.len(), 32, "every change still waits for the main topic");
    assert!(
        all.iter().all(|r| !r.priority),
        "no priority copy left to send"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn priority_copies_go_first_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    priority_copies_go_first(db.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn priority_copies_go_first_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    priority_copies_go_first(&file.url()).await
}

/// Outbox rows and the changes they hold.
async fn outbox_rows(p: &Projector) -> anyhow::Result<(i64, i64)> {
    let row = sqlx::query(
        "SELECT COUNT(*), CAST(COALESCE(SUM(changes), 0) AS BIGINT) FROM projector_outbox",
    )
    .fetch_one(p.db().pool())
    .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// A chunk of persons' changes is one outbox row (a pack). The publisher
/// reads packs whole, each change as it was encoded, finds the priority
/// copies among them, and deletes them as rows.
async fn a_chunk_of_changes_is_one_outbox_row(url: &str) -> anyhow::Result<()> {
    let p = projector(url, EVERYONE).await?;
    let hires: Vec<LifecycleEvent> = (0..450).map(|i| hire(&format!("H{i:03}"), None)).collect();
    assert_eq!(apply(&p, &hires).await?.changes, 450);
    // 200 persons per chunk.
    assert_eq!(outbox_rows(&p).await?, (3, 450));

    // Asked for 10 changes, the publisher gets the first pack whole.
    let first = p.outbox(10).await?;
    assert_eq!(first.len(), 200);
    assert!(first.iter().all(|r| r.seq == first[0].seq && !r.priority));
    // Everything, in the outbox's order, each change as encoded.
    let all = p.outbox(1000).await?;
    assert_eq!(all.len(), 450);
    assert!(all.windows(2).all(|w| w[0].seq <= w[1].seq));
    let mut hired = std::collections::BTreeSet::new();
    for row in &all {
        let change = hrsync_schema::decode_directory_change(&row.payload)?;
        assert_eq!(change.person_id.as_str(), row.person_id);
        assert_eq!(change.version, 1);
        assert!(hired.insert(change.employee_id.as_str().to_owned()));
    }
    assert_eq!(hired.len(), 450);

    // Two terminations and five moves: one row, marked for the fast lane,
    // from which the publisher takes the terminations' priority copies.
    let mut next = vec![terminate_now("H001"), terminate_now("H300")];
    next.extend((10..15).map(|i| title_move(&format!("H{i:03}"), "Lead")));
    assert_eq!(apply(&p, &next).await?.priority_changes, 2);
    assert_eq!(outbox_rows(&p).await?, (4, 457));
    let urgent = p.outbox_priority(10).await?;
    let terminated: Vec<String> = urgent
        .iter()
        .map(|r| hrsync_schema::decode_directory_change(&r.payload))
        .map(|c| c.map(|c| c.employee_id.as_str().to_owned()))
        .collect::<Result<_, _>>()?;
    assert_eq!(terminated, ["H001", "H300"]);
    let flagged =
        |rows: &[hrsync_projector::project::OutboxRow]| rows.iter().filter(|r| r.priority).count();
    assert_eq!(flagged(&p.outbox(1000).await?), 2);
    // Once sent, the row's changes wait for the main topic only.
    p.priority_sent(&urgent.iter().map(|r| r.seq).collect::<Vec<_>>())
        .await?;
    assert!(p.outbox_priority(10).await?.is_empty());
    assert_eq!(flagged(&p.outbox(1000).await?), 0);

    // Deleting the first pack's changes deletes that row only.
    let seqs: Vec<i64> = first.iter().map(|r| r.seq).collect();
    p.delete_outbox(&seqs).await?;
    assert_eq!(outbox_rows(&p).await?, (3, 257));
    assert_eq!(p.outbox(1000).await?.len(), 257);

    // A pack that no longer decodes is an error naming its row, not fewer
    // changes.
    let packed: i64 = sqlx::query_scalar("SELECT MIN(seq) FROM projector_outbox")
        .fetch_one(p.db().pool())
        .await?;
    sqlx::query("UPDATE projector_outbox SET payload = $1 WHERE seq = $2")
        .bind(vec![2_u8, 200, 0])
        .bind(packed)
        .execute(p.db().pool())
        .await?;
    let error = p.outbox(1000).await.expect_err("a damaged pack");
    assert_eq!(
        error.to_string(),
        format!("outbox row {packed} is unreadable: truncated in a length")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunk_of_changes_is_one_outbox_row_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    a_chunk_of_changes_is_one_outbox_row(db.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunk_of_changes_is_one_outbox_row_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    a_chunk_of_changes_is_one_outbox_row(&file.url()).await
}

/// Writers side by side on one PostgreSQL store, more of them than the
/// running projector has: three lanes on disjoint shares of the persons
/// (every person's events in order on one lane), and a priority lane
/// applying the terminations ahead of them (the same events come again
/// later on their lanes). Whatever the interleaving, and with every batch
/// that conflicted retried, the store ends as one writer applying the log
/// in order leaves it: same states, same emitted results, nothing stale (a
/// manager's `is_manager` and count, everyone's manager chain), report
/// counts that add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_end_as_one_writer_on_postgres() -> anyhow::Result<()> {
    concurrent_writers_end_as_one_writer(Lines::Stored).await
}

/// [`concurrent_writers_end_as_one_writer_on_postgres`] with the reporting
/// lines in memory, where the lines themselves catch a batch that read what
/// another one changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_end_as_one_writer_in_memory_on_postgres() -> anyhow::Result<()> {
    concurrent_writers_end_as_one_writer(Lines::InMemory).await
}

async fn concurrent_writers_end_as_one_writer(lines: Lines) -> anyhow::Result<()> {
    const LANES: usize = 3;
    let events = org_workload();
    let reference_db = PgDatabase::fresh().await?;
    let reference = projector(reference_db.url(), MANAGER_RULES).await?;
    for chunk in events.chunks(1) {
        apply(&reference, chunk).await?;
    }
    let expected = states(&reference).await?;
    assert_eq!(expected.len(), 150);

    // Every person's events on one lane, in log order.
    let lane_of = |e: &LifecycleEvent| {
        let id = e.employee_id.as_str();
        id.bytes().map(usize::from).sum::<usize>() % LANES
    };
    let mut lanes: Vec<Vec<LifecycleEvent>> = vec![Vec::new(); LANES];
    for e in &events {
        lanes[lane_of(e)].push(e.clone());
    }
    let terminations: Vec<LifecycleEvent> = events
        .iter()
        .filter(|e| e.kind() == hrsync_domain::EventKind::Terminate)
        .cloned()
        .collect();
    assert!(terminations.len() > 10, "the workload terminates people");

    for round in 0..3_u64 {
        let db = PgDatabase::fresh().await?;
        let (p, _claim) = projector_with(db.url(), MANAGER_RULES, lines).await?;
        let mut writers = tokio::task::JoinSet::new();
        for (lane, stream) in lanes.iter().cloned().enumerate() {
            let p = p.clone();
            writers.spawn(async move {
                // Batches of 1 to 6 events, cut differently every round.
                let mut seed = round * 31 + lane as u64 + 7;
                let mut rest = stream.as_slice();
                while !rest.is_empty() {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    let take = ((seed >> 33) % 6 + 1) as usize;
                    let (batch, tail) = rest.split_at(take.min(rest.len()));
                    apply_retrying(&p, batch).await?;
                    rest = tail;
                }
                anyhow::Ok(())
            });
        }
        let p_priority = p.clone();
        let urgent = terminations.clone();
        writers.spawn(async move {
            for chunk in urgent.chunks(2) {
                apply_retrying(&p_priority, chunk).await?;
            }
            anyhow::Ok(())
        });
        while let Some(done) = writers.join_next().await {
            done??;
        }
        assert_eq!(
            states(&p).await?,
            expected,
            "round {round}: concurrent writers vs one"
        );
        assert_report_counts_add_up(&p).await?;
        assert_eq!(
            reevaluate_everyone(&p).await?,
            0,
            "round {round}: nothing left stale"
        );
        assert_lines_kept(&p).await?;
    }
    Ok(())
}

/// A projector over `p`'s store whose batches stop just before they
/// commit: `held` is notified, and the batch commits once `go` is.
fn held_before_commit(p: &Projector) -> (Projector, Arc<Notify>, Arc<Notify>) {
    let (held, go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let hooked = p.with_before_commit({
        let (held, go) = (held.clone(), go.clone());
        move || {
            let (held, go) = (held.clone(), go.clone());
            Box::pin(async move {
                held.notify_one();
                go.notified().await;
            })
        }
    });
    (hooked, held, go)
}

/// Two batches side by side, each deciding from what it read: a manager's
/// only report leaves (that batch sees the count cross zero and evaluates
/// the manager again: no reports) while another report is hired under
/// them (that batch, reading one report, would not look at the manager at
/// all). Under read committed both would commit and leave the manager
/// without the group; the store's serializable transactions make the hire
/// wait and then fail, and retried it sees the count at zero and evaluates
/// the manager: a manager again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_that_read_what_another_one_changed_is_retried_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    let p = projector(db.url(), &[("Managers", "is_manager")]).await?;
    apply(&p, &[hire("M", None), hire("R1", Some("M"))]).await?;
    assert_eq!(groups(&p, "M").await?, ["Managers"]);

    let (holding, held, go) = held_before_commit(&p);
    let leaving = tokio::spawn(async move { apply(&holding, &[manager_move("R1", None)]).await });
    held.notified().await;
    let hiring = tokio::spawn({
        let p = p.clone();
        async move { apply_retrying(&p, &[hire("R2", Some("M"))]).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !hiring.is_finished(),
        "the hire waits for the batch that changed M's count"
    );
    go.notify_one();
    leaving.await??;
    hiring.await??;

    assert_eq!(groups(&p, "M").await?, ["Managers"], "R2 reports to M");
    assert_eq!(reevaluate_everyone(&p).await?, 0, "nothing left stale");
    assert_report_counts_add_up(&p).await?;
    Ok(())
}

/// A race the reporting lines in memory must catch. With `rules`, after
/// `setup`: `held` stops just before its commit while `beside` commits;
/// then `held` fails with a conflict naming `line`, and applied again the
/// store ends with `who` in `groups`, nothing stale, the lines as stored.
async fn lines_catch(
    rules: &[(&str, &str)],
    setup: &[LifecycleEvent],
    held: Vec<LifecycleEvent>,
    beside: &[LifecycleEvent],
    line: &str,
    (who, groups_after): (&str, &[&str]),
) -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    let (p, _claim) = projector_with(db.url(), rules, Lines::InMemory).await?;
    apply(&p, setup).await?;

    let (holding, stopped, go) = held_before_commit(&p);
    let holding = tokio::spawn({
        let held = held.clone();
        async move { apply(&holding, &held).await }
    });
    stopped.notified().await;
    apply(&p, beside).await?;
    go.notify_one();
    let error = holding
        .await?
        .expect_err("the held batch raced the other one");
    assert!(
        error.to_string().contains(line),
        "caught by the lines ({line}): {error:#}"
    );

    apply(&p, &held).await?;
    assert_eq!(groups(&p, who).await?, groups_after);
    assert_eq!(reevaluate_everyone(&p).await?, 0, "nothing left stale");
    assert_lines_kept(&p).await
}

const LEADS: &[(&str, &str)] = &[("Leads", r#"person.title == "Lead" && direct_reports >= 2"#)];

/// Reading the reporting lines from memory, a batch is checked against
/// what committed since it started. Here a manager becomes a lead while,
/// beside that batch, a second report is hired under them: the hire sees
/// the manager's old title (no group either way) and does not write them;
/// the promotion read one report. Committed as computed, the manager
/// would stay out of the group for leads of two. The lines fail the
/// promotion at its commit, before the store sees it, and retried it reads
/// two reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_that_read_lines_another_one_changed_is_retried_in_memory_on_postgres(
) -> anyhow::Result<()> {
    lines_catch(
        LEADS,
        &[hire("M", None), hire("R1", Some("M"))],
        vec![title_move("M", "Lead")],
        &[hire("R2", Some("M"))],
        "the report count of M",
        ("M", &["Leads"]),
    )
    .await
}

/// The other way round: the hire is held before its commit, and the
/// promotion, beside it, reads one report and commits first. The hire
/// loaded the manager (their count changes) with the old title and does
/// not write them; the store sees only that the promotion wrote a row the
/// hire read, which alone is no reason to stop it. The lines know the
/// promotion read the count the hire changes, and fail the hire.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_that_changed_lines_another_one_read_is_retried_in_memory_on_postgres(
) -> anyhow::Result<()> {
    lines_catch(
        LEADS,
        &[hire("M", None), hire("R1", Some("M"))],
        vec![hire("R2", Some("M"))],
        &[title_move("M", "Lead")],
        "the report count of M (read by a batch that committed first)",
        ("M", &["Leads"]),
    )
    .await
}

/// Manager chains read from memory are checked too: a report becomes a
/// lead while, beside that batch, their manager moves under E1. The move
/// evaluates the report again (their chain changed) with the old title,
/// and does not write them; the promotion walked the old chain. The lines
/// fail the promotion, and retried it sees the new chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_that_walked_a_chain_another_one_changed_is_retried_in_memory_on_postgres(
) -> anyhow::Result<()> {
    lines_catch(
        &[(
            "Leads under E1",
            r#""E1" in manager_chain && person.title == "Lead""#,
        )],
        &[hire("E1", None), hire("B", None), hire("X", Some("B"))],
        vec![title_move("X", "Lead")],
        &[manager_move("B", Some("E1"))],
        "the manager of B",
        ("X", &["Leads under E1"]),
    )
    .await
}

/// A batch that loaded a person another batch then wrote does not write
/// its stale copy over the other's (no lost update): it fails, and retried
/// it folds its event into the person as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_person_written_by_a_concurrent_batch_is_not_lost_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    let p = projector(db.url(), EVERYONE).await?;
    apply(&p, &[hire("X", None)]).await?;

    let (holding, held, go) = held_before_commit(&p);
    let terminating = tokio::spawn(async move { apply(&holding, &[terminate_now("X")]).await });
    held.notified().await;
    // Loads X as it was before the termination.
    let moving = tokio::spawn({
        let p = p.clone();
        async move { apply_retrying(&p, &[title_move("X", "Lead")]).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!moving.is_finished(), "the move waits for the termination");
    go.notify_one();
    terminating.await??;
    moving.await??;

    let x = p.person("X").await?.expect("stored");
    assert_eq!(x.lifecycle.as_deref(), Some("DEPROVISIONED"));
    assert_eq!(
        x.state.attributes.and_then(|a| a.title).as_deref(),
        Some("Lead")
    );
    assert_eq!(reevaluate_everyone(&p).await?, 0, "nothing left stale");
    Ok(())
}
