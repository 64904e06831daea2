//! The admin API's read-only questions: why a person is in each group
//! (`Projector::explain_at`) and what a change of the rules would do
//! (`Projector::preview_rules_with`). Persons are stored by feeding their
//! lifecycle events through the projector; explanations must agree with
//! what it emitted, previews with what applying the rules emits, and
//! neither may change the store. On real PostgreSQL and SQLite.

use std::collections::{BTreeMap, BTreeSet};

use hrsync_domain::{
    EmployeeId, EmploymentType, Hire, LeaveStarted, LifecycleEvent, LifecyclePayload, SourceSystem,
    Terminate, TimeZone, Timestamp, WorkerAttributes,
};
use hrsync_projector::config::ProjectorConfig;
use hrsync_projector::project::{
    Explanation, GroupExplanation, Incoming, PersonChange, PreviewError, PreviewOptions, Projector,
    RulesPreview,
};
use hrsync_projector::rules::{GroupConfig, RulesConfig};
use hrsync_store::Db;
use hrsync_tests::{PgDatabase, SqliteFile};
use serde_json::{json, Value};

const T0: i64 = 1_790_000_000_000;
const DAY: i64 = 86_400_000;

fn group(name: &str, rule: &str, apps: &[&str]) -> GroupConfig {
    GroupConfig {
        name: name.to_owned(),
        rule: rule.to_owned(),
        apps: apps.iter().map(|a| (*a).to_owned()).collect(),
        description: None,
        previous_names: Vec::new(),
    }
}

/// The rules the projector runs.
fn current_rules() -> RulesConfig {
    RulesConfig {
        groups: vec![
            group(
                "Customer Support",
                r#"person.department == "Customer Support""#,
                &["zendesk"],
            ),
            group("People Managers", "is_manager", &["lattice"]),
            group("Everyone", "true", &["slack"]),
            group("Working", r#"state == "ACTIVE""#, &["wiki"]),
            group(
                "Badge holders",
                r#""badge" in person.custom && person.custom.badge.startsWith("B-")"#,
                &["door"],
            ),
            group("Under Ada", r#""E1" in manager_chain"#, &["intranet"]),
            group("Floor two", r#"person.custom.floor == "2""#, &[]),
        ],
    }
}

/// The current rules with Customer Support moved to the Sales department,
/// and a new group granting salesforce.
fn proposed_rules() -> RulesConfig {
    let mut rules = current_rules();
    rules.groups[0].rule = r#"person.department == "Sales""#.to_owned();
    rules.groups.push(group(
        "Sales Tools",
        r#"person.department == "Sales""#,
        &["salesforce"],
    ));
    rules
}

fn config(rules: RulesConfig) -> ProjectorConfig {
    ProjectorConfig {
        rules,
        prehire_days: BTreeMap::from([("slack".to_owned(), 7)]),
        ..ProjectorConfig::default()
    }
}

fn event(
    id: &str,
    recorded: i64,
    effective: i64,
    payload: LifecyclePayload,
) -> anyhow::Result<LifecycleEvent> {
    Ok(LifecycleEvent::new(
        SourceSystem::new("hris")?,
        EmployeeId::new(id)?,
        Timestamp::from_millis(recorded)?,
        Timestamp::from_millis(effective)?,
        TimeZone::new("UTC")?,
        payload,
    )?)
}

fn hire(
    id: &str,
    start: i64,
    name: &str,
    department: &str,
    manager: Option<&str>,
) -> anyhow::Result<LifecycleEvent> {
    let mut attributes = WorkerAttributes::new(name, "Test", EmploymentType::Employee);
    attributes.department = Some(department.to_owned());
    attributes.manager_id = manager.map(EmployeeId::new).transpose()?;
    if id == "E2" {
        attributes.custom.insert("badge".into(), "B-1".into());
    }
    let payload = LifecyclePayload::Hire(Hire { attributes });
    event(id, T0 - 10 * DAY, start, payload)
}

/// Ada (E1) manages Lucy (E2, support, badge) and Bob (E3, support, left
/// yesterday); Lucy manages Carl (E4, sales, starts in 30 days), Dana (E5,
/// sales, on leave) and Eve (E6, support, starts in 3 days: inside slack's
/// pre-hire window, outside zendesk's).
fn workforce() -> anyhow::Result<Vec<LifecycleEvent>> {
    let long_ago = T0 - 100 * DAY;
    Ok(vec![
        hire("E1", long_ago, "Ada", "Engineering", None)?,
        hire("E2", long_ago, "Lucy", "Customer Support", Some("E1"))?,
        hire("E3", long_ago, "Bob", "Customer Support", Some("E1"))?,
        event(
            "E3",
            T0 - DAY,
            T0 - DAY,
            LifecyclePayload::Terminate(Terminate {
                immediate: false,
                last_day_worked: None,
                reason: None,
            }),
        )?,
        hire("E4", T0 + 30 * DAY, "Carl", "Sales", Some("E2"))?,
        hire("E5", long_ago, "Dana", "Sales", Some("E2"))?,
        event(
            "E5",
            T0 - 2 * DAY,
            T0 - 2 * DAY,
            LifecyclePayload::LeaveStarted(LeaveStarted {
                leave_type: None,
                expected_return: None,
            }),
        )?,
        hire("E6", T0 + 3 * DAY, "Eve", "Customer Support", Some("E2"))?,
    ])
}

/// Applies `events` in one batch at `now`.
async fn apply(projector: &Projector, events: &[LifecycleEvent], now: i64) -> anyhow::Result<()> {
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
    Ok(())
}

/// A migrated store at `url` holding the workforce, applied at T0 under
/// the current rules.
async fn stored(url: &str) -> anyhow::Result<(Db, Projector)> {
    let db = Db::connect(url, 4).await?;
    db.migrate().await?;
    let projector = Projector::new(db.clone(), config(current_rules()))?;
    apply(&projector, &workforce()?, T0).await?;
    Ok((db, projector))
}

/// One `projector_person` row, every column.
type PersonRow = (
    String,
    String,
    i64,
    i64,
    Vec<u8>,
    String,
    Option<String>,
    Option<i64>,
    String,
    i64,
);

/// Everything the projector stores about persons, as stored.
#[derive(Debug, PartialEq)]
struct Stored {
    persons: Vec<PersonRow>,
    reports: Vec<(String, i64)>,
    outbox: Vec<(i64, Vec<u8>)>,
    meta: Vec<(String, String)>,
}

async fn store_contents(db: &Db) -> anyhow::Result<Stored> {
    let pool = db.pool();
    Ok(Stored {
        persons: sqlx::query_as(
            "SELECT employee_id, person_id, revision, version, state, lifecycle, manager_id, \
             next_check_at_ms, emitted, updated_at_ms FROM projector_person ORDER BY employee_id",
        )
        .fetch_all(pool)
        .await?,
        reports: sqlx::query_as(
            "SELECT manager_id, reports FROM projector_reports ORDER BY manager_id",
        )
        .fetch_all(pool)
        .await?,
        outbox: sqlx::query_as("SELECT seq, payload FROM projector_outbox ORDER BY seq")
            .fetch_all(pool)
            .await?,
        meta: sqlx::query_as("SELECT name, value FROM projector_meta ORDER BY name")
            .fetch_all(pool)
            .await?,
    })
}

fn find<'a>(explanation: &'a Explanation, group: &str) -> &'a GroupExplanation {
    explanation
        .groups
        .iter()
        .find(|g| g.group == group)
        .unwrap_or_else(|| panic!("no group {group}"))
}

fn inputs(group: &GroupExplanation) -> Vec<(&str, Value)> {
    group
        .inputs
        .iter()
        .map(|i| (i.name.as_str(), i.value.clone()))
        .collect()
}

/// Lucy's explanation names each rule and the values it read.
fn check_lucy(lucy: &Explanation) {
    assert_eq!(lucy.lifecycle, "ACTIVE");
    assert_eq!(lucy.groups.len(), current_rules().groups.len());
    let support = find(lucy, "Customer Support");
    assert_eq!(support.rule, r#"person.department == "Customer Support""#);
    assert_eq!((support.member, support.rule_result), (true, Some(true)));
    assert_eq!(support.apps, ["zendesk"]);
    assert_eq!(
        inputs(support),
        [("person.department", json!("Customer Support"))]
    );
    let managers = find(lucy, "People Managers");
    assert!(managers.member);
    assert_eq!(inputs(managers), [("is_manager", json!(true))]);
    assert_eq!(inputs(find(lucy, "Working")), [("state", json!("ACTIVE"))]);
    assert_eq!(
        inputs(find(lucy, "Badge holders")),
        [("person.custom.badge", json!("B-1"))]
    );
    assert_eq!(
        inputs(find(lucy, "Under Ada")),
        [("manager_chain", json!(["E1"]))]
    );
    assert!(inputs(find(lucy, "Everyone")).is_empty());
    let floor = find(lucy, "Floor two");
    assert_eq!((floor.member, floor.rule_result), (false, None));
    assert!(floor.error.as_deref().is_some_and(|e| e.contains("floor")));
    assert_eq!(inputs(floor), [("person.custom.floor", Value::Null)]);
    let zendesk = lucy.apps.iter().find(|a| a.app == "zendesk").unwrap();
    assert!(zendesk.assigned);
    assert_eq!(zendesk.granted_by, ["Customer Support"]);
    assert_eq!(zendesk.granting_groups, ["Customer Support"]);
    let slack = lucy.apps.iter().find(|a| a.app == "slack").unwrap();
    assert_eq!(slack.granted_by, ["Everyone"]);
}

/// Every person's explained membership and apps are those emitted.
async fn check_agrees_with_emitted(projector: &Projector) -> anyhow::Result<()> {
    for id in ["E1", "E2", "E3", "E4", "E5", "E6"] {
        let explained = projector.explain_at(id, T0).await?.expect("stored");
        let emitted = projector.person(id).await?.expect("stored");
        let members: Vec<&str> = explained
            .groups
            .iter()
            .filter(|g| g.member)
            .map(|g| g.group.as_str())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(members, emitted.groups, "{id}'s groups");
        let apps: Vec<&str> = explained
            .apps
            .iter()
            .filter(|a| a.assigned)
            .map(|a| a.app.as_str())
            .collect();
        assert_eq!(apps, emitted.apps, "{id}'s apps");
        assert_eq!(Some(explained.lifecycle), emitted.lifecycle, "{id}");
    }
    Ok(())
}

async fn explain_names_the_rules_and_what_they_read(url: &str) -> anyhow::Result<()> {
    let (db, projector) = stored(url).await?;
    let before = store_contents(&db).await?;

    check_lucy(
        &projector
            .explain_at("E2", T0)
            .await?
            .expect("Lucy is stored"),
    );
    check_agrees_with_emitted(&projector).await?;

    // Bob left: his department rule still holds, but he is in no group.
    let bob = projector.explain_at("E3", T0).await?.expect("stored");
    assert_eq!(bob.lifecycle, "DEPROVISIONED");
    let support = find(&bob, "Customer Support");
    assert_eq!((support.member, support.rule_result), (false, Some(true)));
    assert!(bob.apps.iter().all(|a| !a.assigned));
    // Ada has one report left that counts (Bob's no longer does).
    let ada = projector.explain_at("E1", T0).await?.expect("stored");
    assert_eq!(
        inputs(find(&ada, "People Managers")),
        [("is_manager", json!(true))]
    );
    assert_eq!(
        inputs(find(&ada, "Under Ada")),
        [("manager_chain", json!([]))]
    );
    // Eve starts in 3 days: slack's window is open, zendesk's is not.
    let eve = projector.explain_at("E6", T0).await?.expect("stored");
    assert_eq!(eve.lifecycle, "PENDING");
    assert!(find(&eve, "Customer Support").member);
    let zendesk = eve.apps.iter().find(|a| a.app == "zendesk").unwrap();
    assert!(!zendesk.assigned);
    assert_eq!(zendesk.granted_by, ["Customer Support"]);
    assert_eq!(zendesk.prehire_window_opens_ms, Some(T0 + 3 * DAY));
    assert!(eve.apps.iter().find(|a| a.app == "slack").unwrap().assigned);
    // Carl's chain is read from the store: Lucy, then Ada.
    let carl = projector.explain_at("E4", T0).await?.expect("stored");
    assert_eq!(
        inputs(find(&carl, "Under Ada")),
        [("manager_chain", json!(["E2", "E1"]))]
    );

    assert!(projector.explain_at("NOPE", T0).await?.is_none());
    let json = serde_json::to_value(&eve)?;
    assert_eq!(json["employee_id"], "E6");
    assert_eq!(json["groups"][0]["group"], "Customer Support");
    assert_eq!(
        store_contents(&db).await?,
        before,
        "explain wrote to the store"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_names_the_rules_and_what_they_read_on_postgres() -> anyhow::Result<()> {
    let pg = PgDatabase::fresh().await?;
    explain_names_the_rules_and_what_they_read(pg.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_names_the_rules_and_what_they_read_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    explain_names_the_rules_and_what_they_read(&file.url()).await
}

fn change(id: &str, groups: (&[&str], &[&str]), apps: (&[&str], &[&str])) -> PersonChange {
    let owned = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect();
    PersonChange {
        employee_id: id.to_owned(),
        groups_gained: owned(groups.0),
        groups_lost: owned(groups.1),
        apps_gained: owned(apps.0),
        apps_lost: owned(apps.1),
    }
}

/// Who moves when Customer Support becomes the Sales department's and
/// Sales Tools is added.
fn check_moves(preview: &RulesPreview) {
    const SUPPORT: &str = "Customer Support";
    let both: &[&str] = &[SUPPORT, "Sales Tools"];
    assert_eq!(
        preview.changes,
        [
            // Lucy leaves support and loses zendesk.
            change("E2", (&[], &[SUPPORT]), (&[], &["zendesk"])),
            // Carl joins both but starts in 30 days: no window open yet.
            change("E4", (both, &[]), (&[], &[])),
            // Dana, on leave, keeps her groups' apps as the projector does.
            change("E5", (both, &[]), (&["salesforce", "zendesk"], &[])),
            // Eve leaves support before zendesk's window opened.
            change("E6", (&[], &[SUPPORT]), (&[], &[])),
        ]
    );
    assert_eq!((preview.persons, preview.persons_changed), (6, 4));
    assert!(!preview.changes_truncated);
    let moved = |m: &BTreeMap<String, _>, name: &str| {
        let movement: &hrsync_projector::project::Movement = &m[name];
        (movement.gaining, movement.losing)
    };
    assert_eq!(moved(&preview.groups, SUPPORT), (2, 2));
    assert_eq!(moved(&preview.groups, "Sales Tools"), (2, 0));
    assert_eq!(moved(&preview.groups, "Everyone"), (0, 0));
    assert_eq!(preview.groups.len(), 8);
    assert_eq!(moved(&preview.apps, "zendesk"), (1, 1));
    assert_eq!(moved(&preview.apps, "salesforce"), (1, 0));
    assert_eq!(moved(&preview.apps, "slack"), (0, 0));
    assert_ne!(preview.current_fingerprint, preview.proposed_fingerprint);
}

fn at_t0(limit: usize) -> PreviewOptions {
    PreviewOptions {
        at_ms: Some(T0),
        limit,
    }
}

/// Each person's emitted groups and apps.
async fn emitted(
    projector: &Projector,
) -> anyhow::Result<BTreeMap<String, (Vec<String>, Vec<String>)>> {
    let mut all = BTreeMap::new();
    for id in ["E1", "E2", "E3", "E4", "E5", "E6"] {
        let view = projector.person(id).await?.expect("stored");
        all.insert(id.to_owned(), (view.groups, view.apps));
    }
    Ok(all)
}

/// The changes from `before` to `after`, as a preview lists them.
fn diff(
    before: &BTreeMap<String, (Vec<String>, Vec<String>)>,
    after: &BTreeMap<String, (Vec<String>, Vec<String>)>,
) -> Vec<PersonChange> {
    let minus = |a: &[String], b: &[String]| -> Vec<String> {
        a.iter().filter(|x| !b.contains(x)).cloned().collect()
    };
    before
        .iter()
        .map(|(id, (groups, apps))| {
            let (new_groups, new_apps) = &after[id];
            PersonChange {
                employee_id: id.clone(),
                groups_gained: minus(new_groups, groups),
                groups_lost: minus(groups, new_groups),
                apps_gained: minus(new_apps, apps),
                apps_lost: minus(apps, new_apps),
            }
        })
        .filter(|c| {
            c != &PersonChange {
                employee_id: c.employee_id.clone(),
                ..PersonChange::default()
            }
        })
        .collect()
}

async fn preview_reports_who_moves_and_writes_nothing(url: &str) -> anyhow::Result<()> {
    let (db, projector) = stored(url).await?;
    let before = store_contents(&db).await?;

    let preview = projector
        .preview_rules_with(&proposed_rules(), at_t0(100))
        .await?;
    check_moves(&preview);
    let unchanged = projector
        .preview_rules_with(&current_rules(), at_t0(100))
        .await?;
    assert_eq!((unchanged.persons, unchanged.persons_changed), (6, 0));
    assert!(unchanged.changes.is_empty());
    // The list stops at the limit; the totals do not.
    let capped = projector
        .preview_rules_with(&proposed_rules(), at_t0(1))
        .await?;
    assert_eq!(capped.changes, preview.changes[..1]);
    assert!(capped.changes_truncated);
    assert_eq!(
        (capped.persons_changed, &capped.groups, &capped.apps),
        (4, &preview.groups, &preview.apps)
    );
    assert_eq!(
        store_contents(&db).await?,
        before,
        "the preview wrote to the store"
    );

    // Applying the proposed rules emits exactly what the preview said.
    let was = emitted(&projector).await?;
    let applied = Projector::new(db.clone(), config(proposed_rules()))?;
    applied.reevaluate_if_rules_changed(T0).await?;
    assert_eq!(diff(&was, &emitted(&applied).await?), preview.changes);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn preview_reports_who_moves_and_writes_nothing_on_postgres() -> anyhow::Result<()> {
    let pg = PgDatabase::fresh().await?;
    preview_reports_who_moves_and_writes_nothing(pg.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn preview_reports_who_moves_and_writes_nothing_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    preview_reports_who_moves_and_writes_nothing(&file.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proposed_rule_that_does_not_compile_is_named() -> anyhow::Result<()> {
    let pg = PgDatabase::fresh().await?;
    let (db, projector) = stored(pg.url()).await?;
    let before = store_contents(&db).await?;
    for (rule, why) in [
        (r#"person.departmnt == "Sales""#, "departmnt"),
        (r#"person.department == "#, "not valid CEL"),
    ] {
        let mut rules = proposed_rules();
        rules.groups.push(group("Typo", rule, &["app"]));
        match projector.preview_rules(&rules).await {
            Err(PreviewError::Rules(error)) => {
                assert_eq!(error.group, "Typo");
                assert!(error.reason.contains(why), "{error}");
                let error = PreviewError::Rules(error);
                assert!(error.to_string().contains("\"Typo\""), "{error}");
                assert!(!error.is_retryable());
            }
            other => panic!("{rule}: expected a rule error, got {other:?}"),
        }
    }
    assert_eq!(store_contents(&db).await?, before);
    Ok(())
}
