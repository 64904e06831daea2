//! The audit trail, written in groups: every SCIM operation's record goes to
//! the `provisioner_audit` table and to `provisioning.audit.v1`, and each
//! change's newest version is kept for `provision-now`.
//!
//! Many changes are applied at once, and each used to write its own rows
//! and wait for its own broker acknowledgement (one commit and one producer
//! linger per operation). A single writer task now takes whatever has
//! queued while it wrote the previous group, writes it with one statement
//! per table and one produce round, and only then answers the callers — so a
//! change still counts as done (and its offset is stored) only once its
//! audit records are stored and published, at a fraction of the cost.

use hrsync_bus::{OutgoingRecord, Producer};
use hrsync_domain::{DirectoryChange, ProvisioningAudit};
use hrsync_store::Db;
use tokio::sync::{mpsc, oneshot};

use crate::store::people::Newest;

/// Requests queued at most before callers wait for the writer.
const QUEUE: usize = 4096;

/// How long a write that fails on a transient store error (a broken
/// connection, the database restarting) is retried before its rows are
/// given up, logged and counted: longer than a database restart or
/// fail-over, short enough that a store gone for good does not hold the
/// provisioner forever. Meanwhile the callers wait, as their changes are
/// not done until their rows are stored.
pub(crate) const STORE_RETRY_BUDGET: std::time::Duration = std::time::Duration::from_secs(300);

/// The audit writer's handle; cheap to share. The writer task ends once
/// [`AuditLog::close`] is called or the last handle is dropped, after
/// writing what was queued.
#[derive(Debug, Clone)]
pub struct AuditLog {
    queue: mpsc::Sender<Request>,
    /// The writer task, until [`AuditLog::close`] waits for it.
    task: std::sync::Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

/// One caller's rows.
#[derive(Debug)]
enum Write {
    /// Audit records, with the trace context of the operation each records.
    Audit(Vec<(ProvisioningAudit, Vec<(String, String)>)>),
    /// The newest change seen for a person (kept unless a newer one is).
    Newest(Newest),
    /// Nothing more: the writer ends once what was queued is written.
    Close,
}

#[derive(Debug)]
struct Request {
    write: Write,
    done: oneshot::Sender<()>,
}

impl AuditLog {
    /// Starts the writer over `db`, publishing to `(producer, topic)` when
    /// given.
    pub fn start(db: Db, publish: Option<(Producer, String)>) -> Self {
        let (queue, requests) = mpsc::channel(QUEUE);
        let task = tokio::spawn(writer(db, publish, requests));
        AuditLog {
            queue,
            task: std::sync::Arc::new(std::sync::Mutex::new(Some(task))),
        }
    }

    /// Writes what was queued, then stops the writer and waits until it has
    /// ended (its producer closed with it). Records sent afterwards are
    /// logged as lost. For the end of a role: nothing is left running.
    pub async fn close(&self) {
        let task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(task) = task else {
            return;
        };
        self.submit(Write::Close).await;
        if let Err(error) = task.await {
            tracing::warn!(%error, "audit writer task failed");
        }
    }

    /// Stores and publishes `records` (each with its operation's trace
    /// headers) and returns once that is done. Failures are logged and
    /// counted, never returned: the SCIM operations they record happened.
    pub async fn record(&self, records: Vec<(ProvisioningAudit, Vec<(String, String)>)>) {
        if !records.is_empty() {
            self.submit(Write::Audit(records)).await;
        }
    }

    /// Keeps `change` as its person's newest, unless a newer one is kept;
    /// returns once stored.
    ///
    /// # Errors
    /// The change cannot be encoded.
    pub async fn remember(
        &self,
        change: &DirectoryChange,
    ) -> Result<(), hrsync_schema::EncodeError> {
        let payload = hrsync_schema::encode_directory_change(change)?;
        self.submit(Write::Newest(Newest {
            person_id: change.person_id.as_str().to_owned(),
            employee_id: change.employee_id.as_str().to_owned(),
            manager_id: change
                .profile
                .attributes
                .manager_id
                .as_ref()
                .map(|m| m.as_str().to_owned()),
            version: i64::try_from(change.version).unwrap_or(i64::MAX),
            payload,
            seen_at_ms: chrono::Utc::now().timestamp_millis(),
        }))
        .await;
        Ok(())
    }

    async fn submit(&self, write: Write) {
        let (done, written) = oneshot::channel();
        match self.queue.send(Request { write, done }).await {
            // The writer answers every request it takes, also on failure.
            Ok(()) => {
                let _ = written.await;
            }
            Err(mpsc::error::SendError(request)) => {
                if let Write::Audit(records) = request.write {
                    metrics::counter!("hrsync_provisioner_audit_failures_total", "sink" => "closed")
                        .increment(records.len() as u64);
                    tracing::warn!(
                        records = records.len(),
                        "audit records not written: the audit writer is closed"
                    );
                }
            }
        }
    }
}

async fn writer(
    db: Db,
    publish: Option<(Producer, String)>,
    mut requests: mpsc::Receiver<Request>,
) {
    let mut group = Vec::new();
    while requests.recv_many(&mut group, QUEUE).await > 0 {
        let mut audits = Vec::new();
        let mut newest: std::collections::HashMap<String, Newest> =
            std::collections::HashMap::new();
        let mut answers = Vec::with_capacity(group.len());
        for request in group.drain(..) {
            match request.write {
                Write::Audit(records) => audits.extend(records),
                // Takes no more; what is queued is still written.
                Write::Close => requests.close(),
                Write::Newest(n) => {
                    // One row per person per statement (an upsert cannot
                    // touch a row twice): the highest version wins.
                    if newest
                        .get(&n.person_id)
                        .is_none_or(|kept| kept.version < n.version)
                    {
                        newest.insert(n.person_id.clone(), n);
                    }
                }
            }
            answers.push(request.done);
        }
        // The three writes are independent: each on its own connection, at
        // the same time.
        let rows: Vec<Newest> = newest.into_values().collect();
        let remembered = async {
            let stored = hrsync_store::retry_transient(
                "remembering the newest changes",
                STORE_RETRY_BUDGET,
                || crate::store::people::remember(&db, &rows),
            )
            .await;
            if let Err(error) = stored {
                tracing::warn!(%error, "newest changes not remembered for provision-now");
            }
        };
        let stored = async {
            let stored =
                hrsync_store::retry_transient("storing audit records", STORE_RETRY_BUDGET, || {
                    crate::store::audit::insert(&db, &audits)
                })
                .await;
            if let Err(error) = stored {
                metrics::counter!("hrsync_provisioner_audit_failures_total", "sink" => "table")
                    .increment(audits.len() as u64);
                tracing::warn!(%error, records = audits.len(), "audit records not stored");
            }
        };
        tokio::join!(
            remembered,
            stored,
            publish_audits(publish.as_ref(), &audits)
        );
        for answer in answers {
            let _ = answer.send(());
        }
    }
}

async fn publish_audits(
    publish: Option<&(Producer, String)>,
    audits: &[(ProvisioningAudit, Vec<(String, String)>)],
) {
    let Some((producer, topic)) = publish else {
        return;
    };
    let mut encoded = Vec::with_capacity(audits.len());
    for (record, headers) in audits {
        match hrsync_schema::encode_audit(record) {
            Ok(payload) => encoded.push((record, headers, payload)),
            Err(error) => tracing::error!(%error, "audit record not encodable"),
        }
    }
    let headers: Vec<Vec<(&str, &[u8])>> = encoded
        .iter()
        .map(|(_, h, _)| h.iter().map(|(k, v)| (k.as_str(), v.as_bytes())).collect())
        .collect();
    if encoded.is_empty() {
        return;
    }
    let records: Vec<OutgoingRecord<'_>> = encoded
        .iter()
        .zip(&headers)
        .map(|((record, _, payload), headers)| OutgoingRecord {
            topic,
            key: record.person_id.as_str().as_bytes(),
            payload,
            headers,
        })
        .collect();
    if let Err(error) = producer.send_batch(&records).await {
        metrics::counter!("hrsync_provisioner_audit_failures_total", "sink" => "topic")
            .increment(records.len() as u64);
        tracing::warn!(%error, records = records.len(), "audit records not published");
    }
}
