//! The admin console in a real browser: headless Chromium (Debian's
//! `chromium`, driven by `playwright-core` from npm, `tests/console/`)
//! against `hrsync run --role all` with the console served, signing in at
//! a real OpenID provider (`tests/oidc-provider/issuer.mjs`, accounts
//! `ada`, an admin, `vic`, a viewer, and `cleo`, an admin by the group in
//! her token that `[oauth.roles]` maps).
//!
//! The stack holds Lucy (Customer Support) and Tom, both in slack, whose
//! deprovision guard holds every deactivation; Tom is terminated, so the
//! guard is tripped holding his deactivation. Lucy also has payroll, a
//! manual-task app, so her account there is an open task. The browser script
//! (`tests/console/e2e.mjs`) then signs in as vic, who sees the guard but
//! is refused its release; and as ada, who searches Lucy and sees why she
//! has slack, releases the guard, sees Tom's termination timed, reconciles
//! slack through its dialog with the keyboard alone, previews a rule
//! change, and marks Lucy's payroll task done. Each step saves a
//! screenshot. Two more tests check the sign-in and sessions over plain
//! HTTP, at one admin process and shared by two.

use std::path::Path;
use std::process::Command;

use anyhow::Context;
use hrsync_tests::{Issuer, HRSYNC_AUDIENCE};
use serde_json::{json, Value};

use crate::admin_history::slack_active;
use crate::stack::{eventually, Processes, ScimApps};

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_and_a_viewer_use_the_console_in_a_browser() -> anyhow::Result<()> {
    let issuer = Issuer::start()?;
    let apps = ScimApps::third_party(&["slack"]).await?;
    let guard = "guard_max_deactivations = 0\nguard_immediate_allowance = 0";
    let mut stack = Processes::start_admin(&apps, &[], issuer.issuer(), guard).await?;
    // Payroll has no SCIM: Lucy's account there is a task for people.
    stack.add_config(
        "[[provisioner.manual_apps]]\nname = \"payroll\"\n\n\
         [[projector.rules.groups]]\nname = \"Payroll users\"\n\
         rule = 'person.department == \"Customer Support\"'\napps = [\"payroll\"]\n",
    )?;
    let all = stack.start_another("all")?;
    stack.wait_ready(all).await?;
    for (id, given, email, department) in [
        ("E7", "Lucy", "lucy@example.com", "Customer Support"),
        ("E8", "Tom", "tom@example.com", "Finance"),
    ] {
        stack
            .push(json!({
                "type": "hire", "employee_id": id, "time_zone": "Europe/London",
                "attributes": {"given_name": given, "family_name": "Gray",
                    "work_email": email, "employment_type": "employee",
                    "department": department, "title": "Agent"}}))
            .await?;
    }
    eventually("both in slack", || async {
        Ok(slack_active(&apps, "lucy@example.com", true).await?
            && slack_active(&apps, "tom@example.com", true).await?)
    })
    .await?;
    stack
        .push(json!({"type": "terminate", "employee_id": "E8",
            "time_zone": "Europe/London", "immediate": true}))
        .await?;
    let http = reqwest::Client::new();
    let reader = issuer
        .token("viewer", "hrsync:read", HRSYNC_AUDIENCE)
        .await?;
    eventually("Tom's deactivation held by the guard", || async {
        let page: Value = http
            .get(format!("{}/api/v1/terminations", stack.admin))
            .bearer_auth(&reader)
            .send()
            .await?
            .json()
            .await?;
        Ok(page["items"][0]["apps"][0]["status"] == "held")
    })
    .await?;

    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&screenshots)?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/console/e2e.mjs");
    let output = tokio::task::spawn_blocking({
        let admin = stack.admin.clone();
        let screenshots = screenshots.clone();
        move || {
            Command::new("node")
                .arg(script)
                .env("CONSOLE_URL", admin)
                .env("SCREENSHOTS", screenshots)
                .output()
        }
    })
    .await??;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the browser script failed:\n{log}");

    // What the browser did, as the API sees it: the guard released by ada,
    // Tom deactivated, then slack reconciled (fixed) by her; vic's refused
    // release changed nothing.
    assert!(slack_active(&apps, "tom@example.com", false).await?);
    let actions: Value = http
        .get(format!("{}/api/v1/actions", stack.admin))
        .bearer_auth(&reader)
        .send()
        .await?
        .json()
        .await?;
    let done: Vec<(&str, &str, &str)> = actions["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let field = |k: &str| a[k].as_str().unwrap_or_default();
            (field("action"), field("subject"), field("client_id"))
        })
        .collect();
    assert_eq!(
        done,
        [
            ("task.close", "ada", "console"),
            ("reconcile", "ada", "console"),
            ("guard.release", "ada", "console")
        ],
        "{actions}"
    );
    for shot in [
        "viewer-refused",
        "person-why",
        "manual-app",
        "terminations",
        "reconciled",
        "rules-preview",
        "tasks",
    ] {
        let file = screenshots.join(format!("{shot}.png"));
        assert!(
            std::fs::metadata(&file).is_ok_and(|m| m.len() > 10_000),
            "no screenshot {}\n{log}",
            file.display()
        );
    }
    Ok(())
}

/// The console's sign-in and session over plain HTTP: who may act, CSRF,
/// a callback not started in this browser, a return path elsewhere,
/// sign-out, and the headers its pages carry.
#[tokio::test(flavor = "multi_thread")]
async fn console_sessions_are_scoped_tied_to_their_browser_and_end_at_sign_out(
) -> anyhow::Result<()> {
    let issuer = Issuer::start()?;
    let apps = ScimApps::third_party(&["slack"]).await?;
    let stack = Processes::start_admin(&apps, &["all"], issuer.issuer(), "").await?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let console = |path: &str| format!("{}/console{path}", stack.admin);

    // Not signed in: the session and the API say 401; a page is the app.
    let answer = http.get(console("/session")).send().await?;
    assert_eq!(answer.status(), 401);
    let answer = http.get(console("/people/E7")).send().await?;
    assert_eq!(answer.status(), 200);
    let csp = answer.headers()["content-security-policy"]
        .to_str()?
        .to_owned();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(answer.headers()["cache-control"], "no-store");
    assert!(answer.text().await?.contains("/console/assets/main.js"));
    let answer = http.get(console("/api/v1/persons")).send().await?;
    assert_eq!(answer.status(), 401);

    // A viewer: reads, may not act, even with the CSRF token.
    let vic = hrsync_tests::console_sign_in(&stack.admin, "vic").await?;
    let session: Value = http
        .get(console("/session"))
        .header("cookie", &vic)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        (&session["subject"], &session["name"], &session["can_act"]),
        (&json!("vic"), &json!("Vic Viewer"), &json!(false)),
        "{session}"
    );
    assert_eq!(session["trace_url"], "http://traces.test/trace/{trace_id}");
    let csrf = session["csrf_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let answer = http
        .get(console("/api/v1/apps"))
        .header("cookie", &vic)
        .send()
        .await?;
    assert_eq!(answer.status(), 200);
    let release = console("/api/v1/apps/slack/guard/release");
    let answer = http
        .post(&release)
        .header("cookie", &vic)
        .header("x-csrf-token", &csrf)
        .send()
        .await?;
    assert_eq!(answer.status(), 403, "a viewer acted");
    assert!(answer.headers()["www-authenticate"]
        .to_str()?
        .contains("hrsync:admin"));

    // An admin: without the session's CSRF token, no action reaches the API.
    let ada = hrsync_tests::console_sign_in(&stack.admin, "ada").await?;
    for token in [None, Some("forged"), Some(csrf.as_str())] {
        let mut request = http.post(&release).header("cookie", &ada);
        if let Some(token) = token {
            request = request.header("x-csrf-token", token);
        }
        let answer = request.send().await?;
        assert_eq!(answer.status(), 403, "CSRF token {token:?} let through");
        let problem: Value = answer.json().await?;
        assert!(problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("X-CSRF-Token")));
    }
    let session: Value = http
        .get(console("/session"))
        .header("cookie", &ada)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(session["can_act"], true);
    let answer = http
        .post(&release)
        .header("cookie", &ada)
        .header(
            "x-csrf-token",
            session["csrf_token"].as_str().unwrap_or_default(),
        )
        .send()
        .await?;
    assert_eq!(answer.status(), 409, "the API answers: nothing to release");

    // Granted the read scope only, but in the group `[oauth.roles]` makes
    // admins: the console and the API let her act.
    let cleo = hrsync_tests::console_sign_in(&stack.admin, "cleo").await?;
    let cleos: Value = http
        .get(console("/session"))
        .header("cookie", &cleo)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        (&cleos["subject"], &cleos["can_act"]),
        (&json!("cleo"), &json!(true)),
        "{cleos}"
    );
    let answer = http
        .post(&release)
        .header("cookie", &cleo)
        .header(
            "x-csrf-token",
            cleos["csrf_token"].as_str().unwrap_or_default(),
        )
        .send()
        .await?;
    assert_eq!(
        answer.status(),
        409,
        "an admin by her group: the API answers"
    );

    // Two sign-ins started in one browser (two tabs): the first finishes
    // all the same.
    let mut jar = std::collections::BTreeMap::new();
    let mut first = None;
    for _ in 0..2 {
        let answer = http.get(console("/login")).send().await?;
        let set = answer.headers()["set-cookie"].to_str()?;
        let (name, value) = set
            .split(';')
            .next()
            .and_then(|pair| pair.split_once('='))
            .context("no login cookie")?;
        jar.insert(name.to_owned(), value.to_owned());
        first.get_or_insert(reqwest::Url::parse(answer.headers()["location"].to_str()?)?);
    }
    assert_eq!(jar.len(), 2, "one login cookie replaced the other: {jar:?}");
    let first = first.context("no sign-in started")?;
    hrsync_tests::console_sign_in_from(first, jar, "vic").await?;

    // A callback this browser did not start is refused; a sign-in returns
    // only to a console page.
    let answer = http
        .get(console("/callback?code=stolen&state=unknown"))
        .send()
        .await?;
    assert_eq!(answer.status(), 400);
    let answer = http
        .get(console("/login?return_to=https://evil.test/"))
        .send()
        .await?;
    assert!(answer.status().is_redirection());
    let location = answer.headers()["location"].to_str()?;
    assert!(location.starts_with(issuer.issuer()), "{location}");
    assert!(
        location.contains("code_challenge_method=S256"),
        "{location}"
    );

    // Signed out: the cookie no longer opens anything.
    let answer = http
        .post(console("/logout"))
        .header("cookie", &ada)
        .header(
            "x-csrf-token",
            session["csrf_token"].as_str().unwrap_or_default(),
        )
        .send()
        .await?;
    assert_eq!(answer.status(), 200);
    let answer = http
        .get(console("/api/v1/apps"))
        .header("cookie", &ada)
        .send()
        .await?;
    assert_eq!(answer.status(), 401);
    Ok(())
}

/// Two admin processes on one store behind one public URL (the first's):
/// a sign-in started at the second finishes at the first (its callback),
/// the session it opens is found and acted with at both, and a sign-out at
/// one ends it at both.
#[tokio::test(flavor = "multi_thread")]
async fn two_admin_processes_share_console_sign_ins_and_sessions() -> anyhow::Result<()> {
    let issuer = Issuer::start()?;
    let apps = ScimApps::third_party(&["slack"]).await?;
    let mut stack = Processes::start_admin(&apps, &["all"], issuer.issuer(), "").await?;
    let port = hrsync_tests::free_port()?;
    let second = stack.start_another_with(
        "admin",
        vec![(
            "HRSYNC_ADMIN__LISTEN".to_owned(),
            format!("127.0.0.1:{port}"),
        )],
    )?;
    stack.wait_ready(second).await?;
    let (first, second) = (stack.admin.clone(), format!("http://127.0.0.1:{port}"));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;

    let ada = hrsync_tests::console_sign_in(&second, "ada").await?;
    let mut csrf = Vec::new();
    for admin in [&first, &second] {
        let session: Value = http
            .get(format!("{admin}/console/session"))
            .header("cookie", &ada)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        assert_eq!(
            (&session["subject"], &session["can_act"]),
            (&json!("ada"), &json!(true)),
            "{admin}: {session}"
        );
        csrf.push(
            session["csrf_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        let answer = http
            .get(format!("{admin}/console/api/v1/apps"))
            .header("cookie", &ada)
            .send()
            .await?;
        assert_eq!(answer.status(), 200, "{admin}");
        let answer = http
            .post(format!("{admin}/console/api/v1/apps/slack/guard/release"))
            .header("cookie", &ada)
            .header("x-csrf-token", &csrf[0])
            .send()
            .await?;
        assert_eq!(answer.status(), 409, "{admin}: the API answers");
    }
    assert_eq!(csrf[0], csrf[1], "one session");

    let answer = http
        .post(format!("{second}/console/logout"))
        .header("cookie", &ada)
        .header("x-csrf-token", &csrf[0])
        .send()
        .await?;
    assert_eq!(answer.status(), 200);
    for admin in [&first, &second] {
        let answer = http
            .get(format!("{admin}/console/api/v1/apps"))
            .header("cookie", &ada)
            .send()
            .await?;
        assert_eq!(answer.status(), 401, "{admin}: signed out");
    }
    Ok(())
}
