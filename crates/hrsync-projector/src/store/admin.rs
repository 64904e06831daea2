//! Store-wide operations outside batches: rebuilds and the fingerprint of
//! the rules the persons were last evaluated with (`projector_meta`).

use super::Store;
use crate::error::Result;

impl Store {
    /// Starts a rebuild: remembers every person's last emitted version
    /// (`projector_version_floor`), then empties the store (state, events,
    /// offsets, outbox, rules fingerprint).
    pub(crate) async fn begin_rebuild(&self) -> Result<()> {
        // What is kept in memory is about to be deleted.
        self.forget_all();
        // (`WHERE true`: SQLite needs it to parse INSERT ... SELECT ... ON
        // CONFLICT.)
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO projector_version_floor (employee_id, version) \
             SELECT employee_id, version FROM projector_person WHERE true \
             ON CONFLICT (employee_id) DO UPDATE SET version = excluded.version",
        )
        .execute(&mut *tx)
        .await?;
        for table in [
            "projector_person",
            "projector_reports",
            "projector_event",
            "projector_offset",
            "projector_outbox",
            "projector_meta",
        ] {
            sqlx::query(&format!("DELETE FROM {table}"))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Ends a rebuild: drops the outbox the replay filled and raises every
    /// person's version to the one remembered before it.
    pub(crate) async fn finish_rebuild(&self) -> Result<()> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "UPDATE projector_person SET version = (SELECT f.version FROM projector_version_floor f \
             WHERE f.employee_id = projector_person.employee_id) \
             WHERE version < (SELECT f.version FROM projector_version_floor f \
             WHERE f.employee_id = projector_person.employee_id)",
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM projector_outbox")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM projector_version_floor")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        // The versions just raised are not in the cached rows (nor is the
        // revision, which the write-back checks, raised with them).
        self.forget_all();
        Ok(())
    }

    /// The fingerprint of the rules last evaluated, if any.
    pub(crate) async fn rules_fingerprint(&self) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM projector_meta WHERE name = 'rules_fingerprint'")
                .fetch_optional(self.db.pool())
                .await?,
        )
    }

    /// Records `fingerprint` as that of the rules last evaluated.
    pub(crate) async fn set_rules_fingerprint(&self, fingerprint: &str) -> Result<()> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query("DELETE FROM projector_meta WHERE name = 'rules_fingerprint'")
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO projector_meta (name, value) VALUES ('rules_fingerprint', $1)")
            .bind(fingerprint)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
