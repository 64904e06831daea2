//! Provisioning through a fault-injecting proxy in front of the real
//! `scim2-server`: throttling with Retry-After, server errors, a lost
//! response, a slow server and dropped connections never produce a
//! duplicate account or lose a change.

use std::time::{Duration, Instant};

use hrsync_domain::{
    AppAssignment, DirectoryChange, EmployeeId, EmploymentType, LifecycleState, PersonId, Profile,
    TimeZone, Timestamp, WorkerAttributes,
};
use hrsync_provisioner::config::{AppConfig, ProvisionerConfig};
use hrsync_provisioner::reconcile::Operation;
use hrsync_provisioner::run::Provisioner;
use hrsync_provisioner::scim::ScimClient;
use hrsync_tests::{Fault, FaultProxy, ScimServer, SqliteFile};

fn change(n: usize, version: u64, state: LifecycleState, title: &str) -> DirectoryChange {
    let mut attributes = WorkerAttributes::new("Given", "Family", EmploymentType::Employee);
    attributes.work_email = Some(format!("user{n}@example.com"));
    attributes.title = Some(title.into());
    DirectoryChange {
        person_id: PersonId::new(format!("p-{n}")).unwrap(),
        employee_id: EmployeeId::new(format!("E{n}")).unwrap(),
        version,
        lifecycle_state: state,
        profile: Profile {
            attributes,
            time_zone: TimeZone::new("UTC").unwrap(),
            start_at: None,
            terminate_at: None,
        },
        groups: vec![],
        apps: vec![AppAssignment {
            app: "app".into(),
            groups: vec![],
        }],
        caused_by: vec![],
        priority: false,
        changed_at: Timestamp::from_millis(1_790_000_000_000).unwrap(),
    }
}

struct Rig {
    server: ScimServer,
    proxy: FaultProxy,
    provisioner: Provisioner,
    _store: SqliteFile,
}

async fn rig(timeout_ms: u64) -> anyhow::Result<Rig> {
    rig_with(timeout_ms, |_| {}).await
}

async fn rig_with(
    timeout_ms: u64,
    tune: impl FnOnce(&mut ProvisionerConfig),
) -> anyhow::Result<Rig> {
    let server = ScimServer::start()?;
    let proxy = FaultProxy::start(&server.base_url()).await?;
    let store = SqliteFile::new()?;
    let db = hrsync_store::Db::connect(&store.url(), 2).await?;
    db.migrate().await?;
    let mut config = ProvisionerConfig {
        max_attempts: 6,
        max_backoff_ms: 300,
        apps: vec![AppConfig {
            timeout_ms,
            use_patch: Some(true),
            push_groups: false,
            ..AppConfig::new(
                "app",
                &proxy.url(),
                hrsync_config::Secret::inline(server.token()),
            )
        }],
        ..ProvisionerConfig::default()
    };
    tune(&mut config);
    let provisioner = Provisioner::new(db, &config, None).await?;
    Ok(Rig {
        server,
        proxy,
        provisioner,
        _store: store,
    })
}

impl Rig {
    fn direct(&self) -> anyhow::Result<ScimClient> {
        ScimClient::new(
            &self.server.base_url(),
            self.server.token(),
            Duration::from_secs(10),
        )
        .map_err(anyhow::Error::msg)
    }

    async fn accounts(&self, n: usize) -> anyhow::Result<Vec<serde_json::Value>> {
        Ok(self
            .direct()?
            .find("Users", "userName", &format!("user{n}@example.com"))
            .await?)
    }

    async fn apply(&self, change: &DirectoryChange) -> anyhow::Result<Vec<Operation>> {
        let mut results = self.provisioner.apply(change, None).await;
        let result = results.remove(0);
        result
            .result
            .map_err(|e| anyhow::anyhow!("{e} after {} attempts", result.attempts))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_is_honoured_and_server_errors_retried() -> anyhow::Result<()> {
    let rig = rig(5_000).await?;
    // 429 with Retry-After: 1 on the create: the provisioner waits at
    // least that long, then creates once.
    rig.proxy.inject(
        Some("POST"),
        Fault::Status {
            status: 429,
            retry_after: Some(1),
        },
    );
    let started = Instant::now();
    let ops = rig
        .apply(&change(1, 1, LifecycleState::Active, "Agent"))
        .await?;
    assert!(matches!(ops[0], Operation::Created { .. }), "{ops:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(rig.accounts(1).await?.len(), 1);

    // Two 500s on the update: retried until it goes through.
    rig.proxy.inject(
        Some("PATCH"),
        Fault::Status {
            status: 500,
            retry_after: None,
        },
    );
    rig.proxy.inject(
        Some("PATCH"),
        Fault::Status {
            status: 503,
            retry_after: None,
        },
    );
    let ops = rig
        .apply(&change(1, 2, LifecycleState::Active, "Lead"))
        .await?;
    assert_eq!(
        ops,
        [Operation::Updated {
            attributes: vec!["title".into()]
        }]
    );
    assert_eq!(rig.accounts(1).await?[0]["title"], "Lead");
    let patches = rig
        .proxy
        .seen()
        .iter()
        .filter(|r| r.starts_with("PATCH"))
        .count();
    assert_eq!(patches, 3, "{:?}", rig.proxy.seen());

    // A 400 is not retried.
    rig.proxy.inject(
        Some("PATCH"),
        Fault::Status {
            status: 400,
            retry_after: None,
        },
    );
    let error = rig
        .apply(&change(1, 3, LifecycleState::Active, "Boss"))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("400") && error.to_string().contains("after 1 attempts"),
        "{error}"
    );

    // Every failed attempt is audited with the operation it failed.
    let db = hrsync_store::Db::connect(&rig._store.url(), 1).await?;
    let failures: Vec<(String, String, Option<i64>)> = sqlx::query_as(
        "SELECT operation, outcome, http_status FROM provisioner_audit \
         WHERE outcome <> 'SUCCESS' ORDER BY at_ms, version",
    )
    .fetch_all(db.pool())
    .await?;
    let expected: Vec<(String, String, Option<i64>)> = [
        ("CREATE", "RETRY", 429),
        ("UPDATE", "RETRY", 500),
        ("UPDATE", "RETRY", 503),
        ("UPDATE", "FAILED", 400),
    ]
    .into_iter()
    .map(|(op, outcome, status)| (op.to_owned(), outcome.to_owned(), Some(status)))
    .collect();
    assert_eq!(failures, expected);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_responses_and_dropped_connections_never_duplicate() -> anyhow::Result<()> {
    let rig = rig(5_000).await?;
    // The create reaches the server but its response is lost: the retry
    // re-matches and links instead of creating again.
    rig.proxy.inject(Some("POST"), Fault::LoseResponse);
    let ops = rig
        .apply(&change(2, 1, LifecycleState::Active, "Agent"))
        .await?;
    assert!(matches!(ops[0], Operation::Linked { .. }), "{ops:?}");
    assert_eq!(rig.accounts(2).await?.len(), 1, "no duplicate");

    // The connection drops before the request is forwarded: retried.
    rig.proxy.inject(Some("POST"), Fault::Drop);
    let ops = rig
        .apply(&change(3, 1, LifecycleState::Active, "Agent"))
        .await?;
    assert!(matches!(ops[0], Operation::Created { .. }), "{ops:?}");
    assert_eq!(rig.accounts(3).await?.len(), 1);

    // The deactivation's response is lost: the retry finds nothing left to
    // do wrong; the account ends inactive.
    rig.proxy.inject(Some("PATCH"), Fault::LoseResponse);
    rig.apply(&change(3, 2, LifecycleState::Deprovisioned, "Agent"))
        .await?;
    assert_eq!(rig.accounts(3).await?[0]["active"], false);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_server_times_out_without_duplicates() -> anyhow::Result<()> {
    // Requests time out after 500 ms; the create is forwarded only after
    // 1.5 s, while the provisioner has already retried.
    let rig = rig(500).await?;
    rig.proxy
        .inject(Some("POST"), Fault::Delay(Duration::from_millis(1500)));
    let ops = rig
        .apply(&change(4, 1, LifecycleState::Active, "Agent"))
        .await?;
    assert!(
        matches!(ops[0], Operation::Created { .. } | Operation::Linked { .. }),
        "{ops:?}"
    );
    // Let the delayed create land, then check there is one account.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rig.accounts(4).await?.len(), 1, "{:?}", rig.proxy.seen());
    Ok(())
}

/// An app that keeps failing is quarantined: its changes are parked (no
/// more calls to it), the other app is not slowed, and once the app answers
/// a probe its parked changes are applied in order.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_app_is_quarantined_and_resumes_by_itself() -> anyhow::Result<()> {
    let bad_server = ScimServer::start()?;
    let good_server = ScimServer::start()?;
    let proxy = FaultProxy::start(&bad_server.base_url()).await?;
    let store = SqliteFile::new()?;
    let db = hrsync_store::Db::connect(&store.url(), 2).await?;
    db.migrate().await?;
    let app = |name: &str, base: String, token: &str| AppConfig {
        timeout_ms: 5_000,
        use_patch: Some(true),
        push_groups: false,
        ..AppConfig::new(name, &base, hrsync_config::Secret::inline(token))
    };
    let config = ProvisionerConfig {
        max_attempts: 2,
        max_backoff_ms: 100,
        quarantine_probe_ms: 100,
        apps: vec![
            app("bad", proxy.url(), bad_server.token()),
            app("good", good_server.base_url(), good_server.token()),
        ],
        ..ProvisionerConfig::default()
    };
    let provisioner = Provisioner::new(db, &config, None).await?;
    for _ in 0..6 {
        proxy.inject(
            None,
            Fault::Status {
                status: 503,
                retry_after: None,
            },
        );
    }
    let both = |n: usize| {
        let mut c = change(n, 1, LifecycleState::Active, "Agent");
        c.apps = ["bad", "good"]
            .iter()
            .map(|a| AppAssignment {
                app: (*a).into(),
                groups: vec![],
            })
            .collect();
        c
    };
    let ops = |results: Vec<hrsync_provisioner::run::AppResult>| -> Vec<(String, Operation)> {
        results
            .into_iter()
            .map(|r| (r.app, r.result.expect("no error surfaces").remove(0)))
            .collect()
    };

    let first = ops(provisioner.apply(&both(10), None).await);
    assert_eq!(first[0], ("bad".into(), Operation::Parked));
    assert!(
        matches!(first[1], (_, Operation::Created { .. })),
        "{first:?}"
    );
    assert!(provisioner.is_quarantined("bad"));

    // Quarantined: parked at once, no call to the bad app; the good one is
    // not slowed.
    let calls = proxy.seen().len();
    let started = Instant::now();
    let second = ops(provisioner.apply(&both(11), None).await);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(second[0], ("bad".into(), Operation::Parked));
    assert!(matches!(second[1], (_, Operation::Created { .. })));
    assert_eq!(proxy.seen().len(), calls, "no call to a quarantined app");

    // Probes fail while the faults last, then the app resumes by itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    while provisioner.is_quarantined("bad") {
        anyhow::ensure!(
            Instant::now() < deadline,
            "never resumed: {:?}",
            proxy.seen()
        );
        provisioner.probe_parked().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bad = ScimClient::new(
        &bad_server.base_url(),
        bad_server.token(),
        Duration::from_secs(5),
    )
    .map_err(anyhow::Error::msg)?;
    for n in [10, 11] {
        let accounts = bad
            .find("Users", "userName", &format!("user{n}@example.com"))
            .await?;
        assert_eq!(accounts.len(), 1, "user{n}: parked change applied once");
    }
    Ok(())
}

/// A change that runs out of attempts while the app answers other changes
/// (a lossy network, not an app down) parks only its person: the app is not
/// quarantined, other persons' changes go on, and the probe applies the
/// parked change. A later change of a waiting person is not held up behind
/// it: a termination goes through at once, and the parked change is stale.
#[tokio::test(flavor = "multi_thread")]
async fn a_change_out_of_attempts_while_the_app_answers_others_parks_only_its_person(
) -> anyhow::Result<()> {
    let rig = rig_with(5_000, |c| {
        c.max_attempts = 2;
        c.quarantine_probe_ms = 100;
    })
    .await?;
    let person = |n: usize| PersonId::new(format!("p-{n}")).unwrap();
    rig.apply(&change(2, 1, LifecycleState::Active, "Agent"))
        .await?;

    // Person 1's create fails twice, 2 s apart (Retry-After); between the
    // two the app answers person 2's update.
    let (first, other) = rig
        .while_failing_twice(
            "POST",
            &change(1, 1, LifecycleState::Active, "Agent"),
            &change(2, 2, LifecycleState::Active, "Lead"),
        )
        .await;
    assert!(matches!(other?[..], [Operation::Updated { .. }]));
    assert_eq!(first?, vec![Operation::Parked]);
    assert!(!rig.provisioner.is_quarantined("app"));
    assert!(rig.provisioner.is_waiting("app", &person(1)));
    assert!(!rig.provisioner.is_waiting("app", &person(2)));
    assert!(rig.accounts(1).await?.is_empty());
    // Another person goes on.
    assert!(matches!(
        rig.apply(&change(3, 1, LifecycleState::Active, "Agent"))
            .await?[..],
        [Operation::Created { .. }]
    ));
    // The probe applies the parked change.
    rig.probe_until_settled(&person(1)).await?;
    assert_eq!(rig.accounts(1).await?.len(), 1);

    // Person 1's update fails the same way while person 4 is created; then
    // person 1 leaves: the termination goes through at once.
    let (second, other) = rig
        .while_failing_twice(
            "PATCH",
            &change(1, 2, LifecycleState::Active, "Lead"),
            &change(4, 1, LifecycleState::Active, "Agent"),
        )
        .await;
    assert!(matches!(other?[..], [Operation::Created { .. }]));
    assert_eq!(second?, vec![Operation::Parked]);
    assert!(!rig.provisioner.is_quarantined("app"));
    assert!(rig.provisioner.is_waiting("app", &person(1)));
    let left = rig
        .apply(&change(1, 3, LifecycleState::Deprovisioned, "Lead"))
        .await?;
    assert!(left.contains(&Operation::Deactivated), "{left:?}");
    assert!(
        !rig.provisioner.is_waiting("app", &person(1)),
        "the parked change is stale"
    );
    let accounts = rig.accounts(1).await?;
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    assert_eq!(accounts[0]["active"], false);
    Ok(())
}

impl Rig {
    /// Applies `failing` while the next two `method` requests answer 503
    /// with `Retry-After: 2`, and `other` after the first of them (so the
    /// app answers it between `failing`'s two attempts).
    async fn while_failing_twice(
        &self,
        method: &str,
        failing: &DirectoryChange,
        other: &DirectoryChange,
    ) -> (
        anyhow::Result<Vec<Operation>>,
        anyhow::Result<Vec<Operation>>,
    ) {
        let faults = self.proxy.applied().len();
        for _ in 0..2 {
            self.proxy.inject(
                Some(method),
                Fault::Status {
                    status: 503,
                    retry_after: Some(2),
                },
            );
        }
        let other = async {
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.proxy.applied().len() == faults {
                anyhow::ensure!(Instant::now() < deadline, "no fault applied");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            self.apply(other).await
        };
        tokio::join!(self.apply(failing), other)
    }

    /// Probes until `person` no longer waits for a retry.
    async fn probe_until_settled(&self, person: &PersonId) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.provisioner.is_waiting("app", person) {
            anyhow::ensure!(Instant::now() < deadline, "never retried");
            self.provisioner.probe_parked().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_501_is_not_retried() -> anyhow::Result<()> {
    let rig = rig(5_000).await?;
    rig.apply(&change(1, 1, LifecycleState::Active, "Agent"))
        .await?;
    // The server does not implement the request: asking again cannot help,
    // so the update fails after its first attempt (max_attempts is 6).
    rig.proxy.inject(
        Some("PATCH"),
        Fault::Status {
            status: 501,
            retry_after: None,
        },
    );
    let error = rig
        .apply(&change(1, 2, LifecycleState::Active, "Lead"))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("501") && error.to_string().contains("after 1 attempts"),
        "{error}"
    );
    let patches = rig
        .proxy
        .seen()
        .iter()
        .filter(|r| r.starts_with("PATCH"))
        .count();
    assert_eq!(patches, 1, "{:?}", rig.proxy.seen());
    assert_eq!(rig.accounts(1).await?[0]["title"], "Agent");
    Ok(())
}

/// An answer larger than the client reads (declared so, or found so while
/// reading) fails the change at once, without holding it in memory or
/// asking again; the app answers normally afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_answer_is_refused_not_read() -> anyhow::Result<()> {
    use hrsync_provisioner::scim::MAX_ANSWER_BYTES;
    let rig = rig(30_000).await?;
    for (person, declared, bytes) in [(1, true, 1 << 30), (2, false, MAX_ANSWER_BYTES + 1)] {
        rig.proxy
            .inject(Some("GET"), Fault::Oversized { bytes, declared });
        let error = rig
            .apply(&change(person, 1, LifecycleState::Active, "Agent"))
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("answer larger than 64 MiB")
                && error.to_string().contains("after 1 attempts"),
            "declared {declared}: {error}"
        );
        assert!(rig.accounts(person).await?.is_empty(), "nothing created");
    }
    let ops = rig
        .apply(&change(3, 1, LifecycleState::Active, "Agent"))
        .await?;
    assert!(matches!(ops[0], Operation::Created { .. }), "{ops:?}");
    Ok(())
}
