//! The admin API of `hrsync run --role all`, behind a real OAuth 2.0
//! issuer (`tests/oidc-provider/issuer.mjs`): a pushed hire is seen in full
//! with a reader's token; no token, another audience and a token without
//! the read scope are refused with problem details; the OpenAPI document
//! is served as committed.

use hrsync_tests::{Issuer, HRSYNC_AUDIENCE};
use serde_json::{json, Value};

use crate::stack::{eventually, Processes, ScimApps};

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_sees_a_hired_person_in_full_and_others_are_refused() -> anyhow::Result<()> {
    let issuer = Issuer::start()?;
    let apps = ScimApps::third_party(&["slack"]).await?;
    let stack = Processes::start_admin(&apps, &["all"], issuer.issuer()).await?;
    let http = reqwest::Client::new();
    let person = format!("{}/api/v1/persons/E7", stack.admin);

    stack
        .push(json!({
            "type": "hire", "employee_id": "E7", "time_zone": "Europe/London",
            "attributes": {"given_name": "Lucy", "family_name": "Gray",
                "work_email": "lucy@example.com", "employment_type": "employee",
                "department": "Customer Support", "title": "Support Agent"}}))
        .await?;
    let reader = issuer
        .token("viewer", "hrsync:read", HRSYNC_AUDIENCE)
        .await?;
    let read = || async {
        let answer = http.get(&person).bearer_auth(&reader).send().await?;
        anyhow::Ok(if answer.status() == 200 {
            answer.json::<Value>().await?
        } else {
            Value::Null
        })
    };
    eventually("the hire seen through the admin API", || async {
        Ok(read().await?["apps"] == json!(["slack"]))
    })
    .await?;
    let seen = read().await?;
    assert_eq!(seen["employee_id"], "E7");
    assert_eq!(seen["lifecycle"], "ACTIVE");
    assert_eq!(seen["groups"], json!(["Customer Support", "Everyone"]));
    let department = seen["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|v| v["name"] == "department"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        department,
        json!({"name": "department", "value": "Customer Support", "source": "push"})
    );
    assert_eq!(seen["events"][0]["kind"], "hire", "{seen}");

    // Refusals: problem details, with the challenge RFC 6750 asks for.
    let answer = http.get(&person).send().await?;
    assert_eq!(answer.status(), 401);
    assert_eq!(answer.headers()["content-type"], "application/problem+json");
    let pusher = issuer
        .token("pusher", "hrsync:events.write", HRSYNC_AUDIENCE)
        .await?;
    let answer = http.get(&person).bearer_auth(&pusher).send().await?;
    assert_eq!(answer.status(), 403);
    assert!(answer.headers()["www-authenticate"]
        .to_str()?
        .contains("scope=\"hrsync:read\""));
    let elsewhere = issuer
        .token("viewer", "hrsync:read", "https://other.test/")
        .await?;
    let answer = http.get(&person).bearer_auth(&elsewhere).send().await?;
    assert_eq!(answer.status(), 401);

    // Nobody by that id; no such endpoint.
    let answer = http
        .get(format!("{}/api/v1/persons/E404", stack.admin))
        .bearer_auth(&reader)
        .send()
        .await?;
    assert_eq!(answer.status(), 404);
    let problem: Value = answer.json().await?;
    assert!(problem["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("E404"));
    let answer = http
        .get(format!("{}/api/v1/nothing", stack.admin))
        .bearer_auth(&reader)
        .send()
        .await?;
    assert_eq!(answer.status(), 404);

    // The document is served without a token, as committed.
    let served: Value = http
        .get(format!("{}/api/v1/openapi.json", stack.admin))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        served,
        serde_json::from_str::<Value>(hrsync_admin::OPENAPI)?
    );
    Ok(())
}
