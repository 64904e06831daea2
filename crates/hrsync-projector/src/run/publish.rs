//! Publishing the outbox: directory changes to Kafka once committed, read
//! from the feed (or the table), deleted once the broker has them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hrsync_bus::{OutgoingRecord, Producer};
use tokio_util::sync::CancellationToken;

use super::{Shared, Topics, TRACEPARENT};
use crate::error::RunError;
use crate::feed::{Feed, Taken};
use crate::gate::Lane;
use crate::project::OutboxRow;

/// Each outbox row's trace: a `projector.publish` span in the trace of the
/// event that caused the change (kept open until the batch is sent), and
/// the record headers that carry that span on, so the trace shows the
/// projector between the push API and the provisioner. Without an
/// OpenTelemetry layer the row's own `traceparent` is passed on.
struct Traces {
    _spans: Vec<tracing::Span>,
    headers: Vec<Vec<(String, Vec<u8>)>>,
}

impl Traces {
    fn of(rows: &[OutboxRow]) -> Self {
        let mut spans = Vec::new();
        let headers = rows
            .iter()
            .map(|r| {
                let Some(parent) = r.traceparent.as_deref() else {
                    return Vec::new();
                };
                let span = tracing::info_span!(
                    "projector.publish",
                    person = %r.person_id,
                    priority = r.priority,
                );
                hrsync_telemetry::propagation::continue_from(
                    &span,
                    [(TRACEPARENT, parent.as_bytes())],
                );
                let injected = hrsync_telemetry::propagation::inject(&span);
                spans.push(span);
                if injected.is_empty() {
                    vec![(TRACEPARENT.to_owned(), parent.as_bytes().to_vec())]
                } else {
                    injected
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect()
                }
            })
            .collect();
        Traces {
            _spans: spans,
            headers,
        }
    }

    /// The headers of each row, as records take them.
    fn views(&self) -> Vec<Vec<(&str, &[u8])>> {
        self.headers
            .iter()
            .map(|h| h.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect())
            .collect()
    }
}

/// The records sending `rows` (those flagged for the priority lane only,
/// if `priority_only`) to `topic`, each with its trace.
fn outgoing<'a>(
    rows: &'a [OutboxRow],
    traces: &'a [Vec<(&'a str, &'a [u8])>],
    topic: &'a str,
    priority_only: bool,
) -> Vec<OutgoingRecord<'a>> {
    rows.iter()
        .zip(traces)
        .filter(|(r, _)| r.priority || !priority_only)
        .map(|(r, trace)| OutgoingRecord {
            topic,
            key: r.person_id.as_bytes(),
            payload: &r.payload,
            headers: trace,
        })
        .collect()
}

/// Changes published per cycle (whole outbox rows: a little more when a
/// pack ends past it). Large enough that the publisher keeps up on SQLite,
/// where each cycle's delete waits for its turn at the gate behind a main
/// batch.
const PUBLISH_ROWS: usize = 5000;

/// Committed changes the feed holds for the publisher at most (under 1 KB
/// each); more, and the publisher reads the table instead.
pub(super) const FEED_ROWS: usize = 20_000;

/// How often the publisher reads the table although the feed is whole: a
/// safety net for a row committed but never offered (it should not happen;
/// if it does, it is sent this late, not lost).
const TABLE_CHECK: Duration = Duration::from_secs(10);

/// Where the publisher takes its next rows from.
struct Source {
    /// The table (else the feed).
    from_table: bool,
    /// When the table was last read.
    table_read: Instant,
}

/// Drains the outbox: rows are deleted once the broker acknowledged them (a
/// crash in between republishes them; consumers drop versions they have
/// seen).
///
/// Rows come from the table at start, whenever the feed broke (it
/// overflowed, or a transaction failed) and every [`TABLE_CHECK`]: priority
/// copies first (wherever they are in the outbox), then the rest in order,
/// until a read finds less than a cycle's worth. From then on they come
/// from the feed, as the writers commit them, without reading them back.
pub(super) async fn publish(
    shared: Arc<Shared>,
    producer: Producer,
    topics: Topics,
    feed: Arc<Feed>,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    // Connect and learn the topics now, not on the first change: a
    // termination in the first second after start should not wait for it.
    if let Err(error) = producer
        .prepare(
            &[&topics.directory_priority, &topics.directory_changes],
            Duration::from_secs(10),
        )
        .await
    {
        tracing::warn!(%error, "preparing the producer failed; the first send will retry");
    }
    let mut source = Source {
        from_table: true,
        table_read: Instant::now(),
    };
    loop {
        source.from_table |= source.table_read.elapsed() >= TABLE_CHECK;
        let rows = if source.from_table {
            read_table(&shared, &producer, &topics, &feed, &mut source).await?
        } else {
            match feed.take(PUBLISH_ROWS) {
                Taken::Rows(rows) => rows,
                Taken::Broken => {
                    source.from_table = true;
                    continue;
                }
            }
        };
        if rows.is_empty() {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = shared.outbox_ready.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            continue;
        }
        if !send(&shared, &producer, &topics, &rows).await? {
            // The rows stay in the table; read them there.
            source.from_table = true;
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// Reads the table: the priority copies first (sent at once), then the
/// oldest rows. Whatever the feed holds is in the table, and read there.
async fn read_table(
    shared: &Shared,
    producer: &Producer,
    topics: &Topics,
    feed: &Feed,
    source: &mut Source,
) -> Result<Vec<OutboxRow>, RunError> {
    source.table_read = Instant::now();
    feed.reset();
    metrics::counter!("hrsync_projector_outbox_table_reads_total").increment(1);
    publish_priority_from_table(shared, producer, topics, feed).await?;
    match shared.projector.outbox(PUBLISH_ROWS as i64).await {
        Ok(rows) => {
            feed.read_from_table(rows.iter().map(|r| r.seq));
            // Everything committed before this read is in it; what
            // commits after it comes through the feed.
            source.from_table = rows.len() >= PUBLISH_ROWS;
            Ok(rows)
        }
        Err(error) if error.is_retryable() => {
            tracing::warn!(%error, "reading the outbox failed");
            Ok(Vec::new())
        }
        Err(error) => Err(error.into()),
    }
}

/// Sends `rows` (their priority copies first: a termination does not wait
/// behind the creates sent with it), then deletes them. False if sending
/// failed (the rows stay).
async fn send(
    shared: &Shared,
    producer: &Producer,
    topics: &Topics,
    rows: &[OutboxRow],
) -> Result<bool, RunError> {
    let traces = Traces::of(rows);
    let headers = traces.views();
    let priority = outgoing(rows, &headers, &topics.directory_priority, true);
    let main = outgoing(rows, &headers, &topics.directory_changes, false);
    let sent = async {
        if !priority.is_empty() {
            producer.send_batch(&priority).await?;
        }
        producer.send_batch(&main).await
    }
    .await;
    if let Err(error) = sent {
        tracing::warn!(%error, "publishing directory changes failed; retrying");
        return Ok(false);
    }
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    let _turn = shared.publisher_turn(Lane::Normal).await;
    match shared.projector.delete_outbox(&seqs).await {
        Ok(()) => {}
        // The rows stay and are sent again with the next read of the
        // table; consumers drop versions they have seen.
        Err(error) if error.is_retryable() => {
            tracing::warn!(%error, "deleting published outbox rows failed");
        }
        Err(error) => return Err(error.into()),
    }
    metrics::counter!("hrsync_projector_changes_published_total").increment(rows.len() as u64);
    Ok(true)
}

/// Sends the priority copies waiting in the outbox table, however many
/// other rows are ahead of them, and records them as sent (their rows wait
/// for the main topic).
async fn publish_priority_from_table(
    shared: &Shared,
    producer: &Producer,
    topics: &Topics,
    feed: &Feed,
) -> Result<(), RunError> {
    let urgent = match shared.projector.outbox_priority(1000).await {
        Ok(urgent) => urgent,
        Err(error) if error.is_retryable() => {
            tracing::warn!(%error, "reading the outbox failed");
            return Ok(());
        }
        Err(error) => return Err(error.into()),
    };
    if urgent.is_empty() {
        return Ok(());
    }
    feed.read_from_table(urgent.iter().map(|r| r.seq));
    // Each change is published in the trace of its cause.
    let traces = Traces::of(&urgent);
    let headers = traces.views();
    // (Every row read here is flagged for the priority lane.)
    let records = outgoing(&urgent, &headers, &topics.directory_priority, true);
    if let Err(error) = producer.send_batch(&records).await {
        tracing::warn!(%error, "publishing priority directory changes failed; retrying");
        return Ok(());
    }
    let seqs: Vec<i64> = urgent.iter().map(|r| r.seq).collect();
    let _turn = shared.publisher_turn(Lane::Priority).await;
    match shared.projector.priority_sent(&seqs).await {
        Ok(()) => Ok(()),
        // Sent again with the next read; consumers drop versions they have
        // seen.
        Err(error) if error.is_retryable() => {
            tracing::warn!(%error, "recording sent priority copies failed");
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}
