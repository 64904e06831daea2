//! App-wide reconciliation against the local SCIM app (`hrsync-scim-app`,
//! served in-process, its filter comparing case-sensitively),
//! with the link store on PostgreSQL and SQLite: an app seeded with
//! accounts in sync, drifted, unlinked, missing and orphaned is classified
//! exactly by a dry run that changes nothing; a fix run links, creates,
//! re-applies and deactivates orphans under the deprovision guard, audits
//! each fix, and leaves the app in sync.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hrsync_config::Secret;
use hrsync_domain::LifecycleState::{Active, Deprovisioned};
use hrsync_domain::{DirectoryChange, LifecycleState};
use hrsync_provisioner::config::{AppConfig, ProvisionerConfig};
use hrsync_provisioner::groups;
use hrsync_provisioner::reconcile::guard_tripped;
use hrsync_provisioner::run::Provisioner;
use hrsync_provisioner::scim::{PatchOp, ScimClient, USER_SCHEMA};
use hrsync_provisioner::sweep::{
    self, Action, Class, Finding, FixResult, Options, OrphanPolicy, ReconcileMode, Report,
    SweepError,
};
use hrsync_scim_app::{AppState, Quirk};
use hrsync_store::Db;
use hrsync_tests::{directory_change, PgDatabase, SqliteFile};
use serde_json::{json, Value};
use sqlx::Row;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "sweep-token";

/// The local SCIM app, served in-process with `quirks`.
struct LocalApp {
    base: String,
    task: tokio::task::JoinHandle<()>,
}

impl LocalApp {
    async fn start(quirks: &[Quirk]) -> anyhow::Result<Self> {
        let state = AppState::with_options(
            TOKEN,
            hrsync_scim_app::Options {
                quirks: quirks.iter().copied().collect(),
                ..hrsync_scim_app::Options::default()
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let router = hrsync_scim_app::router(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(LocalApp { base, task })
    }

    fn client(&self) -> anyhow::Result<ScimClient> {
        ScimClient::new(&self.base, TOKEN, Duration::from_secs(10)).map_err(anyhow::Error::msg)
    }

    /// Deletes a user, as an admin of the app would.
    async fn delete_user(&self, id: &str) -> anyhow::Result<()> {
        let status = reqwest::Client::new()
            .delete(format!("{}/Users/{id}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await?
            .status();
        anyhow::ensure!(status.as_u16() == 204, "DELETE /Users/{id}: {status}");
        Ok(())
    }
}

impl Drop for LocalApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn zendesk(app: &LocalApp) -> AppConfig {
    AppConfig {
        push_groups: false,
        ..AppConfig::new("zendesk", &app.base, Secret::inline(TOKEN))
    }
}

async fn provisioner(db: &Db, apps: Vec<AppConfig>) -> anyhow::Result<Provisioner> {
    let config = ProvisionerConfig {
        apps,
        ..ProvisionerConfig::default()
    };
    config.validate().map_err(anyhow::Error::msg)?;
    Ok(Provisioner::new(db.clone(), &config, None).await?)
}

/// `employee`'s change: `<first name>@example.com` in zendesk while
/// active or suspended.
fn person(employee: &str, name: &str, state: LifecycleState) -> DirectoryChange {
    let apps: &[&str] = if state == Deprovisioned {
        &[]
    } else {
        &["zendesk"]
    };
    directory_change(employee, name, 2, state, apps, &[])
}

/// Creates an account in the app directly, as it was before hrsync.
async fn seed(client: &ScimClient, user_name: &str, active: bool) -> anyhow::Result<String> {
    let user = client
        .create(
            "Users",
            &json!({
                "schemas": [USER_SCHEMA],
                "userName": user_name,
                "name": {"givenName": "Seeded", "familyName": "Account"},
                "displayName": "Seeded Account",
                "title": "Before hrsync",
                "active": active,
            }),
        )
        .await?;
    Ok(user["id"].as_str().unwrap_or_default().to_owned())
}

async fn id_of(client: &ScimClient, user_name: &str) -> anyhow::Result<String> {
    let user = client
        .find_user("userName", user_name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no account {user_name}"))?;
    Ok(user["id"].as_str().unwrap_or_default().to_owned())
}

/// Everything a dry run must leave as it is: the app's accounts (with
/// their versions) and every provisioner table it could touch.
async fn state_of(db: &Db, client: &ScimClient) -> anyhow::Result<Vec<String>> {
    let mut state: Vec<String> = client
        .list("Users", None, 10_000)
        .await?
        .iter()
        .map(Value::to_string)
        .collect();
    state.sort();
    let links = sqlx::query(
        "SELECT person_id, app, scim_id, applied_version, applied, active, groups, status, \
         updated_at_ms FROM provisioner_link ORDER BY person_id, app",
    )
    .fetch_all(db.pool())
    .await?;
    for link in links {
        let columns = (0..link.len())
            .map(|i| {
                link.try_get::<String, _>(i)
                    .or_else(|_| link.try_get::<i64, _>(i).map(|n| n.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        state.push(columns.join(" | "));
    }
    for table in [
        "provisioner_audit",
        "provisioner_deactivation",
        "provisioner_guard",
        "provisioner_held",
        "provisioner_group",
        "provisioner_person",
    ] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(db.pool())
            .await?;
        state.push(format!("{table}: {n}"));
    }
    Ok(state)
}

/// The findings by `userName` (lower case), each one.
fn by_user(report: &Report) -> BTreeMap<String, Finding> {
    let mut map = BTreeMap::new();
    for f in &report.findings {
        let name = f.user_name.clone().unwrap_or_default().to_lowercase();
        assert!(
            map.insert(name.clone(), f.clone()).is_none(),
            "{name} twice"
        );
    }
    map
}

fn class_and_action(findings: &BTreeMap<String, Finding>) -> BTreeMap<&str, (Class, Action)> {
    findings
        .iter()
        .map(|(u, f)| (u.as_str(), (f.class, f.action)))
        .collect()
}

async fn audited(db: &Db, person: &str, operation: &str, outcome: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM provisioner_audit WHERE app = 'zendesk' AND person_id LIKE $1 \
         AND operation = $2 AND outcome = $3",
    )
    .bind(person)
    .bind(operation)
    .bind(outcome)
    .fetch_one(db.pool())
    .await?)
}

fn options(dry_run: bool) -> Options {
    Options::new(dry_run, OrphanPolicy::Deactivate)
}

async fn story(db_url: &str) -> anyhow::Result<()> {
    let app = LocalApp::start(&[Quirk::CaseSensitiveFilter]).await?;
    let client = app.client()?;
    let db = Db::connect(db_url, 4).await?;
    db.migrate().await?;
    let guarded = AppConfig {
        // Two deactivations an hour; the third trips the guard.
        guard_max_deactivations: Some(2),
        orphans: OrphanPolicy::Deactivate,
        ..zendesk(&app)
    };
    let provisioner = provisioner(&db, vec![guarded]).await?;
    // The same store without the app: persons the provisioner has seen
    // but not applied to zendesk.
    let seen_only = self::provisioner(&db, Vec::new()).await?;

    // Provisioned by hrsync, then changed in the app by hand.
    for (e, name) in [
        ("E1", "Ada Tester"),
        ("E2", "Bob Tester"),
        ("E3", "Cy Tester"),
        ("E4", "Dee Tester"),
    ] {
        let results = provisioner.apply(&person(e, name, Active), None).await;
        anyhow::ensure!(results[0].result.is_ok(), "{e}: {:?}", results[0].result);
    }
    let bob = id_of(&client, "bob@example.com").await?;
    client
        .patch(
            "Users",
            &bob,
            &[
                PatchOp::replace("title", json!("Promoted by hand")),
                PatchOp::replace("name.familyName", json!("Changed")),
            ],
        )
        .await?;
    let cy = id_of(&client, "cy@example.com").await?;
    client.set_active(&cy, false, true).await?;
    let dee = id_of(&client, "dee@example.com").await?;
    app.delete_user(&dee).await?;
    // Seen, but never applied to zendesk: Eve has no account; Fay and Gus
    // have accounts made before hrsync (Gus's userName in another case,
    // which the app's case-sensitive filter does not find); Hal left, and
    // his account is still active.
    for (e, name, state) in [
        ("E5", "Eve Tester", Active),
        ("E6", "Fay Tester", Active),
        ("E7", "Gus Tester", Active),
        ("E8", "Hal Tester", Deprovisioned),
    ] {
        seen_only.apply(&person(e, name, state), None).await;
    }
    let fay = seed(&client, "fay@example.com", true).await?;
    let gus = seed(&client, "GUS@Example.COM", true).await?;
    let hal = seed(&client, "hal@example.com", true).await?;
    // Orphans: no HR person; one inactive already.
    let mut orphans = Vec::new();
    for name in [
        "root@example.com",
        "svc-backup@example.com",
        "temp@example.com",
    ] {
        orphans.push(seed(&client, name, true).await?);
    }
    let old = seed(&client, "old@example.com", false).await?;

    // The dry run names each account exactly, and changes nothing.
    let before = state_of(&db, &client).await?;
    let report = sweep::reconcile_app(&provisioner, "zendesk", &options(true)).await?;
    assert_eq!(
        state_of(&db, &client).await?,
        before,
        "the dry run changed something"
    );
    assert!(report.dry_run);
    assert_eq!(report.accounts_read, 10);
    assert_eq!(report.persons, 8);
    let findings = by_user(&report);
    use Action::{Create, Deactivate, Link, Reapply};
    use Class::*;
    let expected: BTreeMap<&str, (Class, Action)> = [
        ("ada@example.com", (InSync, Action::None)),
        ("bob@example.com", (Drifted, Reapply)),
        ("cy@example.com", (Drifted, Reapply)),
        ("dee@example.com", (Missing, Create)),
        ("eve@example.com", (Missing, Create)),
        ("fay@example.com", (UnlinkedMatch, Link)),
        ("gus@example.com", (UnlinkedMatch, Link)),
        ("hal@example.com", (UnlinkedMatch, Link)),
        ("root@example.com", (Orphan, Deactivate)),
        ("svc-backup@example.com", (Orphan, Deactivate)),
        ("temp@example.com", (Orphan, Deactivate)),
        ("old@example.com", (Orphan, Action::None)),
    ]
    .into_iter()
    .collect();
    assert_eq!(class_and_action(&findings), expected);
    let f = &findings["bob@example.com"];
    assert_eq!(f.account_id.as_deref(), Some(bob.as_str()));
    assert_eq!(
        (f.person_id.as_deref(), f.employee_id.as_deref()),
        (Some("p-E2"), Some("E2"))
    );
    assert_eq!(f.differences, ["name.familyName", "title"]);
    assert_eq!(findings["cy@example.com"].differences, ["active"]);
    let f = &findings["dee@example.com"];
    assert_eq!(
        (f.account_id.as_deref(), f.previous_account_id.as_deref()),
        (None, Some(dee.as_str()))
    );
    assert_eq!(findings["eve@example.com"].previous_account_id, None);
    let f = &findings["gus@example.com"];
    assert_eq!(
        (f.account_id.as_deref(), f.user_name.as_deref()),
        (Some(gus.as_str()), Some("GUS@Example.COM"))
    );
    assert_eq!(f.person_id.as_deref(), Some("p-E7"));
    assert_eq!(
        f.differences,
        [
            "displayName",
            "emails",
            "externalId",
            "name.familyName",
            "name.givenName",
            "title",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
        ]
    );
    assert_eq!(
        findings["fay@example.com"].account_id.as_deref(),
        Some(fay.as_str())
    );
    let f = &findings["hal@example.com"];
    assert_eq!(
        (f.account_id.as_deref(), f.person_id.as_deref()),
        (Some(hal.as_str()), Some("p-E8"))
    );
    assert_eq!(
        f.differences,
        ["active"],
        "no account is wanted for a leaver: only active counts"
    );
    assert_eq!(
        findings["old@example.com"].account_id.as_deref(),
        Some(old.as_str())
    );
    assert!(report.findings.iter().all(|f| f.result.is_none()));
    let summary = report.summary();
    assert!(
        summary.contains(&row("unlinked match", 3, "would link 3")),
        "{summary}"
    );
    assert!(
        summary.contains(&row("orphan", 4, "would deactivate 3, nothing to do 1")),
        "{summary}"
    );

    // The fix run.
    let report = sweep::reconcile_app(&provisioner, "zendesk", &options(false)).await?;
    let findings = by_user(&report);
    assert_eq!(
        class_and_action(&findings),
        expected,
        "classified as the dry run did"
    );
    let ops = |user: &str| match &findings[user].result {
        Some(FixResult::Done { operations }) => operations.clone(),
        other => panic!("{user}: {other:?}"),
    };
    assert_eq!(ops("fay@example.com")[0], format!("linked {fay}"));
    assert_eq!(ops("gus@example.com")[0], format!("linked {gus}"));
    assert_eq!(
        ops("hal@example.com"),
        [format!("linked {hal}"), "deactivated".to_owned()]
    );
    assert!(ops("dee@example.com")[0].starts_with("created "));
    assert!(ops("eve@example.com")[0].starts_with("created "));
    let bob_ops = ops("bob@example.com");
    assert!(
        bob_ops.len() == 1 && bob_ops[0].starts_with("updated ") && bob_ops[0].contains("title"),
        "{bob_ops:?}"
    );
    assert!(ops("cy@example.com").contains(&"reactivated".to_owned()));
    // Hal's deactivation and one orphan's fill the guard's two; the other
    // two orphans are held.
    let orphan_results: Vec<&Option<FixResult>> = [
        "root@example.com",
        "svc-backup@example.com",
        "temp@example.com",
    ]
    .iter()
    .map(|u| &findings[*u].result)
    .collect();
    let done = orphan_results
        .iter()
        .filter(|r| matches!(r, Some(FixResult::Done { .. })))
        .count();
    let held = orphan_results
        .iter()
        .filter(|r| matches!(r, Some(FixResult::Held { .. })))
        .count();
    assert_eq!((done, held), (1, 2), "{orphan_results:?}");
    assert!(guard_tripped(&db, "zendesk").await?);
    assert_eq!(report.failures(), 0);
    assert!(report
        .summary()
        .contains("2 deactivation(s) held by the deprovision guard of zendesk"));

    // In the app: no account was duplicated; Gus's is his, as HR says.
    let users = client.list("Users", None, 10_000).await?;
    assert_eq!(users.len(), 12, "{users:#?}");
    let gus_now = client.get("Users", &gus).await?.expect("Gus's account");
    assert_eq!(gus_now["userName"], "gus@example.com");
    assert_eq!(gus_now["externalId"], "p-E7");
    assert_eq!(
        client.get("Users", &hal).await?.expect("Hal's")["active"],
        false
    );
    assert_eq!(
        client.get("Users", &old).await?.expect("old")["active"],
        false
    );
    let bob_now = client.get("Users", &bob).await?.expect("Bob's");
    assert!(bob_now.get("title").is_none(), "{bob_now}");
    assert_eq!(bob_now["name"]["familyName"], "Tester");

    // Every fix audited.
    for person in ["p-E6", "p-E7", "p-E8"] {
        assert_eq!(
            audited(&db, person, "LINK", "SUCCESS").await?,
            1,
            "{person}"
        );
    }
    assert_eq!(audited(&db, "p-E8", "DEACTIVATE", "SUCCESS").await?, 1);
    // Dee's account twice: provisioned, deleted by hand, created again.
    assert_eq!(audited(&db, "p-E4", "CREATE", "SUCCESS").await?, 2);
    assert_eq!(audited(&db, "p-E5", "CREATE", "SUCCESS").await?, 1);
    assert_eq!(audited(&db, "p-E2", "UPDATE", "SUCCESS").await?, 1);
    assert_eq!(audited(&db, "p-E3", "REACTIVATE", "SUCCESS").await?, 1);
    assert_eq!(audited(&db, "orphan:%", "DEACTIVATE", "SUCCESS").await?, 1);
    assert_eq!(audited(&db, "orphan:%", "GUARD_HOLD", "HELD").await?, 2);

    // A second dry run: everything in sync but the two orphans the guard
    // holds.
    let report = sweep::reconcile_app(&provisioner, "zendesk", &options(true)).await?;
    let findings = by_user(&report);
    let out_of_sync: BTreeSet<&str> = findings
        .iter()
        .filter(|(_, f)| f.action != Action::None)
        .map(|(u, _)| u.as_str())
        .collect();
    let held: BTreeSet<&str> = [
        "root@example.com",
        "svc-backup@example.com",
        "temp@example.com",
    ]
    .into_iter()
    .filter(|u| findings[*u].active == Some(true))
    .collect();
    assert_eq!(held.len(), 2);
    assert_eq!(out_of_sync, held);
    assert_eq!(report.counts[&InSync], 8);
    assert_eq!(report.counts[&Orphan], 4);

    // Released, the next run deactivates them; then all is in sync.
    provisioner
        .release("zendesk")
        .await
        .map_err(anyhow::Error::msg)?;
    let report = sweep::reconcile_app(&provisioner, "zendesk", &options(false)).await?;
    let deactivated = report
        .findings
        .iter()
        .filter(|f| matches!(f.result, Some(FixResult::Done { .. })))
        .count();
    assert_eq!(deactivated, 2, "{report:#?}");
    let report = sweep::reconcile_app(&provisioner, "zendesk", &options(true)).await?;
    assert!(
        report.findings.iter().all(|f| f.action == Action::None),
        "{report:#?}"
    );
    assert_eq!(
        report.counts.values().sum::<usize>(),
        12,
        "every account classified once: {:?}",
        report.counts
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_is_classified_exactly_and_fixed_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    story(db.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_is_classified_exactly_and_fixed_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    story(&file.url()).await
}

/// Group memberships that differ from the desired ones are reported per
/// account (joins missing and memberships too many), without a change by
/// the dry run; the fix run requests them of the group writer and flushes
/// it, and the app is then in sync.
async fn memberships_story(db_url: &str) -> anyhow::Result<()> {
    let app = LocalApp::start(&[]).await?;
    let client = app.client()?;
    let db = Db::connect(db_url, 4).await?;
    db.migrate().await?;
    let provisioner = provisioner(
        &db,
        vec![AppConfig {
            push_groups: true,
            ..zendesk(&app)
        }],
    )
    .await?;
    let zendesk = &provisioner.apps()[0];
    let everyone = ["Everyone"];
    for (e, name, groups) in [
        ("E1", "Ada Tester", &everyone[..]),
        ("E2", "Bob Tester", &everyone[..]),
        ("E3", "Cy Tester", &[][..]),
    ] {
        let change = directory_change(e, name, 1, Active, &["zendesk"], groups);
        let results = provisioner.apply(&change, None).await;
        anyhow::ensure!(results[0].result.is_ok(), "{:?}", results[0].result);
    }
    assert!(zendesk.flush_groups(&db).await?);
    let group = client.find("Groups", "displayName", "Everyone").await?;
    let group = group[0]["id"].as_str().unwrap_or_default().to_owned();
    let bob = id_of(&client, "bob@example.com").await?;
    let cy = id_of(&client, "cy@example.com").await?;
    // By hand in the app: Bob out of Everyone, Cy into it; and Ada's title.
    client
        .patch_members(
            &group,
            &[
                PatchOp::remove(format!("members[value eq \"{bob}\"]")),
                PatchOp::add("members", json!([{"value": cy}])),
            ],
        )
        .await?;
    let ada = id_of(&client, "ada@example.com").await?;
    client
        .patch(
            "Users",
            &ada,
            &[PatchOp::replace("title", json!("By hand"))],
        )
        .await?;
    let members = || async {
        let group = client.get("Groups", &group).await?.expect("Everyone");
        let mut ids: Vec<String> = group["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["value"].as_str().map(str::to_owned))
            .collect();
        ids.sort();
        anyhow::Ok(ids)
    };

    let before = state_of(&db, &client).await?;
    let report = sweep::reconcile_app(
        &provisioner,
        "zendesk",
        &Options::new(true, OrphanPolicy::Report),
    )
    .await?;
    assert_eq!(state_of(&db, &client).await?, before);
    assert_eq!(report.groups_read, 1);
    assert_eq!(report.memberships_pending, 0);
    let findings = by_user(&report);
    let f = &findings["ada@example.com"];
    assert_eq!(
        (f.class, f.action),
        (Class::Drifted, Action::Reapply),
        "{f:?}"
    );
    assert_eq!(f.differences, ["title"]);
    assert!(f.groups_to_join.is_empty() && f.groups_to_leave.is_empty());
    let f = &findings["bob@example.com"];
    assert_eq!(
        (f.class, f.action),
        (Class::Drifted, Action::Memberships),
        "{f:?}"
    );
    assert_eq!(f.differences, ["groups"]);
    assert_eq!(f.groups_to_join, ["Everyone"]);
    let f = &findings["cy@example.com"];
    assert_eq!(
        (f.class, f.action, f.groups_to_leave.as_slice()),
        (
            Class::Drifted,
            Action::Memberships,
            &["Everyone".to_owned()][..]
        ),
        "{f:?}"
    );
    assert!(report
        .summary()
        .contains("2 account(s) with group membership drift"));

    let report = sweep::reconcile_app(
        &provisioner,
        "zendesk",
        &Options::new(false, OrphanPolicy::Report),
    )
    .await?;
    let findings = by_user(&report);
    let done = |user: &str| match &findings[user].result {
        Some(FixResult::Done { operations }) => operations.clone(),
        other => panic!("{user}: {other:?}"),
    };
    assert_eq!(
        done("bob@example.com"),
        ["groups: join [Everyone], leave []"]
    );
    assert_eq!(
        done("cy@example.com"),
        ["groups: join [], leave [Everyone]"]
    );
    let mut expected = vec![ada, bob];
    expected.sort();
    assert_eq!(members().await?, expected);
    assert_eq!(groups::pending(&db, "zendesk").await?, 0);

    let report = sweep::reconcile_app(
        &provisioner,
        "zendesk",
        &Options::new(true, OrphanPolicy::Report),
    )
    .await?;
    assert!(
        report.findings.iter().all(|f| f.class == Class::InSync),
        "{report:#?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn membership_drift_is_reported_and_fixed_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    memberships_story(db.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn membership_drift_is_reported_and_fixed_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    memberships_story(&file.url()).await
}

/// A scheduled reconciliation runs one process at a time per app (the
/// store claim `reconcile:APP`), in `report` mode changes nothing, and in
/// `fix` mode repairs the app.
#[tokio::test(flavor = "multi_thread")]
async fn scheduled_reconciliation_takes_turns_and_fixes() -> anyhow::Result<()> {
    let app = LocalApp::start(&[]).await?;
    let client = app.client()?;
    let pg = PgDatabase::fresh().await?;
    let db = Db::connect(pg.url(), 4).await?;
    db.migrate().await?;
    let every_second = |mode| AppConfig {
        reconcile_every_secs: Some(1),
        reconcile_mode: mode,
        ..zendesk(&app)
    };
    let provisioner = std::sync::Arc::new(provisioner(&db, vec![zendesk(&app)]).await?);
    let results = provisioner
        .apply(&person("E1", "Ada Tester", Active), None)
        .await;
    anyhow::ensure!(results[0].result.is_ok());
    let ada = id_of(&client, "ada@example.com").await?;
    client.set_active(&ada, false, true).await?;
    let runs = |mode: &'static str| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM provisioner_reconcile_run WHERE app = 'zendesk' AND mode = $1",
            )
            .bind(mode)
            .fetch_one(db.pool())
            .await
        }
    };
    let active =
        || async { anyhow::Ok(client.get("Users", &ada).await?.expect("Ada's")["active"] == true) };

    // Report mode: runs, records, changes nothing.
    let config = ProvisionerConfig {
        apps: vec![every_second(ReconcileMode::Report)],
        ..ProvisionerConfig::default()
    };
    let stop = CancellationToken::new();
    let schedule = tokio::spawn({
        let (provisioner, stop) = (provisioner.clone(), stop.clone());
        async move { sweep::scheduled(provisioner, &config, stop).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while runs("report").await? == 0 {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no scheduled run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!active().await?, "a report-mode run changed the app");
    stop.cancel();
    schedule.await?;

    // Fix mode, while another process holds the app's claim: nothing runs
    // (and a reconciliation by hand is refused) until it lets go.
    let claim = db.try_claim("reconcile:zendesk").await?.expect("the claim");
    let busy = sweep::reconcile_app(
        &provisioner,
        "zendesk",
        &Options::new(true, OrphanPolicy::Report),
    )
    .await;
    assert!(
        matches!(busy, Err(SweepError::Busy(ref app)) if app == "zendesk"),
        "{busy:?}"
    );
    let config = ProvisionerConfig {
        apps: vec![every_second(ReconcileMode::Fix)],
        ..ProvisionerConfig::default()
    };
    let stop = CancellationToken::new();
    let schedule = tokio::spawn({
        let (provisioner, stop) = (provisioner.clone(), stop.clone());
        async move { sweep::scheduled(provisioner, &config, stop).await }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        runs("fix").await?,
        0,
        "ran while another process held the claim"
    );
    assert!(!active().await?);
    claim.release().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !active().await? {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the scheduled run did not fix Ada's account"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(audited(&db, "p-E1", "REACTIVATE", "SUCCESS").await?, 1);
    stop.cancel();
    schedule.await?;
    Ok(())
}

/// A line of the summary table.
fn row(class: &str, count: usize, action: &str) -> String {
    format!("{class:<16} {count:>7}  {action}\n")
}

/// A running reconciliation shows how far it is: its phase, the accounts
/// read, the fixes to make and those made so far; nothing once it is done.
/// Another process on the store (an admin replica, say) shows it too, as
/// the running one last wrote it there.
#[tokio::test(flavor = "multi_thread")]
async fn a_running_reconciliation_shows_its_progress() -> anyhow::Result<()> {
    let app = LocalApp::start(&[]).await?;
    let store = SqliteFile::new()?;
    let db = Db::connect(&store.url(), 4).await?;
    db.migrate().await?;
    // Four requests a second: each create (a search, then the POST) takes
    // about half a second, so the run is seen part way.
    let slow = AppConfig {
        rate_limit: 4.0,
        ..zendesk(&app)
    };
    let provisioner = provisioner(&db, vec![slow]).await?;
    // Persons seen by a provisioner without the app: all missing from it.
    // It stands for another process on the same store.
    let other = self::provisioner(&db, Vec::new()).await?;
    for n in 0..6 {
        let change = person(&format!("E{n}"), &format!("P{n} Tester"), Active);
        other.apply(&change, None).await;
    }
    assert_eq!(provisioner.reconcile_progress("zendesk").await?, None);
    assert_eq!(other.reconcile_progress("zendesk").await?, None);

    let fix = options(false);
    let run = sweep::reconcile_app(&provisioner, "zendesk", &fix);
    let (report, here, there) =
        tokio::join!(run, watch_progress(&provisioner), watch_progress(&other));
    let (report, here, there) = (report?, here?, there?);
    assert_eq!(report.counts[&Class::Missing], 6, "{}", report.summary());
    for seen in [&here, &there] {
        assert!(seen.iter().all(|v| !v.dry_run && v.app == "zendesk"));
        // Counts only grow.
        for pair in seen.windows(2) {
            assert!(pair[1].fixed >= pair[0].fixed, "{seen:?}");
        }
    }
    let midway = here
        .iter()
        .find(|v| v.fixed > 0 && v.fixed < v.to_fix)
        .unwrap_or_else(|| panic!("no view part way through the fixes: {here:?}"));
    assert_eq!(
        (midway.phase, midway.to_fix, midway.failed),
        (sweep::Phase::Fixing, 6, 0)
    );
    // The other process saw the run fixing, as of about a second before.
    assert!(
        there
            .iter()
            .any(|v| v.phase == sweep::Phase::Fixing && v.to_fix == 6),
        "seen by the other process: {there:?}"
    );
    assert_eq!(provisioner.reconcile_progress("zendesk").await?, None);
    assert_eq!(other.reconcile_progress("zendesk").await?, None);
    Ok(())
}

/// Every distinct progress of zendesk's reconciliation `process` shows
/// until, having shown one, it shows none.
async fn watch_progress(process: &Provisioner) -> anyhow::Result<Vec<sweep::ProgressView>> {
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(view) = process.reconcile_progress("zendesk").await? {
            if seen.last() != Some(&view) {
                seen.push(view);
            }
        } else if !seen.is_empty() {
            return Ok(seen);
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "{seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
