//! The persons' leases (`provisioner_lease`) that let many provisioner
//! processes share one PostgreSQL store: one holder at a time, renewed by
//! its holder, taken over once expired, given up only by the token that
//! took it; many at once per statement (a process batches its tasks').

use std::collections::HashSet;

use hrsync_provisioner::store::lease::{give_up_all, renew_all, take_all};
use hrsync_store::Db;
use hrsync_tests::PgDatabase;

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn set(items: &[&str]) -> HashSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn leases_on_postgres() -> anyhow::Result<()> {
    let pg = PgDatabase::fresh().await?;
    let db = Db::connect(pg.url(), 4).await?;
    db.migrate().await?;
    let take = |process: &'static str, persons: &[&str], tokens: &[&str], ttl_ms: i64| {
        let (db, persons, tokens) = (db.clone(), strings(persons), strings(tokens));
        async move { take_all(&db, process, &persons, &tokens, ttl_ms).await }
    };
    let minute = 60_000;

    // Free: taken, several at once.
    let taken = take("a", &["p-1", "p-2"], &["a:1", "a:2"], minute).await?;
    assert_eq!(taken, set(&["p-1", "p-2"]));
    // Held by a: refused to b, which gets the free one of its batch.
    let taken = take("b", &["p-1", "p-3"], &["b:1", "b:2"], minute).await?;
    assert_eq!(taken, set(&["p-3"]));
    // a's own tasks take a person one at a time: a newer token of a takes
    // over its older one (whose give-up may still be on its way).
    assert_eq!(take("a", &["p-1"], &["a:3"], minute).await?, set(&["p-1"]));
    // A late give-up of a token no longer holding the lease changes nothing.
    give_up_all(&db, &strings(&["p-1"]), &strings(&["a:1"])).await?;
    give_up_all(&db, &strings(&["p-1"]), &strings(&["b:1"])).await?;
    assert!(take("b", &["p-1"], &["b:3"], minute).await?.is_empty());
    // Given up by its holder: taken.
    give_up_all(&db, &strings(&["p-1"]), &strings(&["a:3"])).await?;
    assert_eq!(take("b", &["p-1"], &["b:4"], minute).await?, set(&["p-1"]));

    // Renewed only under the token holding it.
    let (persons, tokens) = (strings(&["p-2", "p-1"]), strings(&["a:2", "a:3"]));
    assert_eq!(renew_all(&db, &persons, &tokens, minute).await?, 1);

    // A holder that died: its lease (expired at once here) is taken over,
    // and its renewal finds it lost.
    assert_eq!(
        take("dead", &["p-4"], &["dead:1"], -1).await?,
        set(&["p-4"])
    );
    assert_eq!(take("b", &["p-4"], &["b:5"], minute).await?, set(&["p-4"]));
    assert_eq!(
        renew_all(&db, &strings(&["p-4"]), &strings(&["dead:1"]), minute).await?,
        0
    );
    assert!(take("dead", &["p-4"], &["dead:2"], minute)
        .await?
        .is_empty());
    Ok(())
}
