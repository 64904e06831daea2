//! The kept number of each manager's direct reports
//! (`projector_reports`), moved by the batches that change it.

use std::collections::BTreeMap;

use hrsync_store::{BindPadding, Null};

use super::{BatchTx, ROWS};
use crate::error::Result;

impl BatchTx {
    /// Adds `deltas` to the stored direct-report counts.
    pub(crate) async fn store_report_deltas(
        &mut self,
        deltas: &BTreeMap<String, i64>,
    ) -> Result<()> {
        let tx = self.get().await?;
        // In key order, so that two transactions lock the rows in one order.
        let deltas: Vec<(&String, &i64)> = deltas.iter().collect();
        for chunk in deltas.chunks(ROWS) {
            let slots = hrsync_store::padded_rows(chunk.len(), ROWS);
            let sql = format!(
                "INSERT INTO projector_reports (manager_id, reports) {} ON CONFLICT (manager_id) \
                 DO UPDATE SET reports = projector_reports.reports + excluded.reports",
                hrsync_store::padded_values(slots, 2)
            );
            let mut query = sqlx::query(&sql);
            for (manager, delta) in chunk {
                query = query.bind(manager.as_str()).bind(**delta);
            }
            query = query.bind_padding(slots - chunk.len(), &[Null::Text, Null::BigInt]);
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }
}
