//! `provisioner_audit`: the audit trail of every SCIM operation.

use hrsync_domain::ProvisioningAudit;
use hrsync_store::Db;

use super::ROWS;

/// Inserts `audits`; rows already stored (by an earlier try whose answer
/// was lost) are left as they are.
///
/// # Errors
/// Query failures.
pub async fn insert(
    db: &Db,
    audits: &[(ProvisioningAudit, Vec<(String, String)>)],
) -> Result<(), sqlx::Error> {
    for chunk in audits.chunks(ROWS) {
        let sql = format!(
            "INSERT INTO provisioner_audit (audit_id, person_id, app, operation, outcome, \
             http_status, latency_ms, attempt, version, scim_id, error, trace_id, at_ms) VALUES {} \
             ON CONFLICT (audit_id) DO NOTHING",
            hrsync_store::placeholders(chunk.len(), 13)
        );
        let mut query = sqlx::query(&sql);
        for (a, _) in chunk {
            query = query
                .bind(&a.audit_id)
                .bind(a.person_id.as_str())
                .bind(&a.app)
                .bind(a.operation.as_str())
                .bind(a.outcome.as_str())
                .bind(a.http_status.map(i64::from))
                .bind(i64::try_from(a.latency_ms).unwrap_or(i64::MAX))
                .bind(i64::from(a.attempt))
                .bind(i64::try_from(a.version).unwrap_or(i64::MAX))
                .bind(&a.scim_id)
                .bind(&a.error)
                .bind(&a.trace_id)
                .bind(a.at.as_millis());
        }
        query.execute(db.pool()).await?;
    }
    Ok(())
}
