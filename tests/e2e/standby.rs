//! The projector's standby: one projector process holds its store, a second
//! one on the same store waits, alive but not ready (so a load balancer or
//! Kubernetes sends it nothing and a rollout waits), and takes over when the
//! first dies.

use std::time::{Duration, Instant};

use crate::stack::{eventually, lucys_hire, Processes, ScimApps};

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_projector_is_unready_until_it_takes_over() -> anyhow::Result<()> {
    let apps = ScimApps::third_party(&["slack"]).await?;
    let mut stack = Processes::start(&apps, &["ingest", "projector", "provisioner"]).await?;
    let active = 1;
    let standby = stack.start_another("projector")?;

    // Alive, and found the store held: it stays unready.
    eventually("the standby alive", || async {
        Ok(stack.health(standby).await.0 == Some(200))
    })
    .await?;
    // Its log says so (the stack logs at "warn").
    eventually("the standby saying it waits", || async {
        Ok(stack.log(standby).contains("waiting as a standby"))
    })
    .await?;
    for _ in 0..10 {
        assert_eq!(
            stack.health(standby).await,
            (Some(200), Some(503)),
            "the standby is ready while another projector holds the store"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The active one dies: the standby takes over, becomes ready, and
    // projects what HR sends next.
    stack.kill(active)?;
    let killed = Instant::now();
    stack.wait_ready(standby).await?;
    let failover = killed.elapsed();
    stack.push(lucys_hire()).await?;
    eventually("Lucy's slack account, projected by the standby", || async {
        Ok(apps.account("lucy@example.com").await?[0].1.is_some())
    })
    .await?;
    println!(
        "standby ready {failover:?} after the active projector was killed; \
         the hire provisioned {:?} after the kill",
        killed.elapsed()
    );
    Ok(())
}
