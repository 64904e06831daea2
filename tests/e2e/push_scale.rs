//! Many push API processes behind one address: they share the ingest store,
//! so an HR system's retry that lands on another process than its first
//! attempt gets the same answer, and the event is published once.

use std::time::Duration;

use serde_json::{json, Value};

use crate::stack::{eventually, lucys_hire, Processes, ScimApps};

#[tokio::test(flavor = "multi_thread")]
async fn two_push_api_processes_share_idempotency_keys() -> anyhow::Result<()> {
    let apps = ScimApps::third_party(&["slack"]).await?;
    let mut stack = Processes::start(&apps, &["all"]).await?;
    let port = hrsync_tests::free_port()?;
    let second = stack.start_another_with(
        "ingest",
        vec![(
            "HRSYNC_INGEST__PUSH__LISTEN".to_owned(),
            format!("127.0.0.1:{port}"),
        )],
    )?;
    stack.wait_ready(second).await?;
    let bases = [
        stack.push_url().to_owned(),
        format!("http://127.0.0.1:{port}"),
    ];

    // One hire, sent 16 times at once under one key, half to each process
    // (an HR system retrying through a load balancer).
    let hire = lucys_hire();
    let attempts = (0..16).map(|n| {
        let (stack, hire, base) = (&stack, &hire, &bases[n % 2]);
        async move {
            stack
                .push_until_accepted_at(base, "hire-E7-1", hire, Duration::from_secs(30))
                .await
        }
    });
    let answers: Vec<Value> = futures::future::try_join_all(attempts)
        .await?
        .into_iter()
        .map(|(answer, _)| answer)
        .collect();
    let ids: std::collections::BTreeSet<&str> = answers
        .iter()
        .map(|a| a["event_id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(ids.len(), 1, "one event for one key: {answers:?}");
    assert!(!ids.contains(""), "{answers:?}");

    // The same key with another body is refused by either process.
    let mut other = hire.clone();
    other["attributes"]["given_name"] = json!("Lucia");
    let client = reqwest::Client::new();
    for base in &bases {
        let answer = client
            .post(format!("{base}/v1/events"))
            .bearer_auth(crate::stack::PUSH_TOKEN)
            .header("Idempotency-Key", "hire-E7-1")
            .json(&other)
            .send()
            .await?;
        assert_eq!(answer.status(), 409, "{base}");
    }

    eventually("Lucy's slack account", || async {
        Ok(apps.account("lucy@example.com").await?[0].1.is_some())
    })
    .await?;
    Ok(())
}
