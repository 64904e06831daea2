//! Reading a topic without joining a consumer group or committing anything:
//! what the admin API lists of a dead-letter topic, with which records a
//! group (the redrive's) has already been through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};

use crate::{Error, KafkaConfig, Record, Result};

/// How long the broker gets to answer a metadata, watermark or offset
/// question, and to deliver the records a listing asked for.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A position in a topic: partition, then offset. Listings are ordered by
/// it.
pub type Position = (i32, i64);

/// What to read of a topic.
#[derive(Debug, Clone)]
pub struct PeekRequest {
    /// The topic.
    pub topic: String,
    /// The consumer group whose committed offsets mark the records it has
    /// been through as done; none marks nothing done.
    pub done_by: Option<String>,
    /// Only records that group has not been through yet.
    pub only_pending: bool,
    /// Start after this position (a previous page's `next`).
    pub after: Option<Position>,
    /// At most this many records.
    pub limit: usize,
}

/// One page of a topic.
#[derive(Debug, Clone)]
pub struct Peeked {
    /// The records, by partition then offset, each with whether the group
    /// has been through it.
    pub records: Vec<(Record, bool)>,
    /// Where the next page starts, when there is more.
    pub next: Option<Position>,
    /// Records stored in the topic now.
    pub stored: i64,
    /// Of those, how many the group has not been through.
    pub pending: i64,
}

/// One partition's bounds: stored from `low` to before `high`; the group
/// has been through everything before `done`.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    partition: i32,
    low: i64,
    high: i64,
    done: i64,
}

/// Reads pages of topics, each group's client kept for the next page (a
/// new client costs a connection, metadata and a coordinator lookup: most
/// of a page's time).
pub struct Peeker {
    config: KafkaConfig,
    clients: Mutex<HashMap<String, Arc<Mutex<BaseConsumer>>>>,
}

impl std::fmt::Debug for Peeker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peeker").finish_non_exhaustive()
    }
}

/// The group of a client that marks nothing done.
const NO_GROUP: &str = "hrsync-peek";

impl Peeker {
    /// A peeker over the cluster of `config`; clients are made as needed.
    pub fn new(config: KafkaConfig) -> Self {
        Peeker {
            config,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Reads a page of `request.topic`.
    ///
    /// # Errors
    /// The topic does not exist, or the broker did not answer in time.
    #[tracing::instrument(skip(self))]
    pub async fn peek(&self, request: PeekRequest) -> Result<Peeked> {
        let client = self.client(request.done_by.as_deref().unwrap_or(NO_GROUP))?;
        // librdkafka's calls here block: off the runtime. One page at a
        // time per client: a page assigns the partitions it reads.
        tokio::task::spawn_blocking(move || {
            let consumer = client.lock().unwrap_or_else(PoisonError::into_inner);
            let page = read_page(&consumer, &request);
            // Stop fetching in the background until the next page.
            let _ = consumer.unassign();
            page
        })
        .await
        .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
    }

    /// The client of `group`, made at its first page.
    fn client(&self, group: &str) -> Result<Arc<Mutex<BaseConsumer>>> {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(group) {
            return Ok(client.clone());
        }
        let mut cfg = self.config.client_config("peek")?;
        // Offsets are only read: nothing is stored or committed, no group
        // is joined (partitions are assigned, not subscribed).
        cfg.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false");
        let consumer: BaseConsumer = cfg.create().map_err(Error::Client)?;
        let client = Arc::new(Mutex::new(consumer));
        clients.insert(group.to_owned(), client.clone());
        Ok(client)
    }
}

fn read_page(consumer: &BaseConsumer, request: &PeekRequest) -> Result<Peeked> {
    let bounds = bounds(consumer, request)?;
    let stored = bounds.iter().map(|b| b.high - b.low).sum();
    let pending = bounds.iter().map(|b| b.high - b.done.max(b.low)).sum();
    let mut records = Vec::new();
    let mut next = None;
    for b in &bounds {
        let mut start = if request.only_pending {
            b.done.max(b.low)
        } else {
            b.low
        };
        match request.after {
            Some((partition, _)) if b.partition < partition => continue,
            Some((partition, offset)) if b.partition == partition => {
                start = start.max(offset.saturating_add(1));
            }
            _ => {}
        }
        if start >= b.high {
            continue;
        }
        let room = request.limit - records.len();
        let available = usize::try_from(b.high - start).unwrap_or(usize::MAX);
        if room > 0 {
            let read = read_partition(
                consumer,
                &request.topic,
                b.partition,
                start,
                available.min(room),
            )?;
            records.extend(read.into_iter().map(|r| {
                let done = r.offset < b.done;
                (r, done)
            }));
        }
        if available > room {
            next = records.last().map(|(r, _)| (r.partition, r.offset));
            break;
        }
    }
    Ok(Peeked {
        records,
        next,
        stored,
        pending,
    })
}

/// Each partition's stored range and the group's committed offset in it.
fn bounds(consumer: &BaseConsumer, request: &PeekRequest) -> Result<Vec<Bounds>> {
    let topic = request.topic.as_str();
    let mut partitions = crate::topics::partition_ids(consumer.client(), topic, TIMEOUT)?;
    if partitions.is_empty() {
        return Err(Error::UnknownTopic(topic.to_owned()));
    }
    partitions.sort_unstable();
    let mut committed = TopicPartitionList::new();
    for partition in &partitions {
        committed.add_partition(topic, *partition);
    }
    let committed = match request.done_by {
        Some(_) => Some(consumer.committed_offsets(committed, TIMEOUT)?),
        None => None,
    };
    partitions
        .into_iter()
        .map(|partition| {
            let (low, high) = consumer.fetch_watermarks(topic, partition, TIMEOUT)?;
            let done = committed
                .as_ref()
                .and_then(|c| c.find_partition(topic, partition))
                .and_then(|p| match p.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                })
                .unwrap_or(low);
            Ok(Bounds {
                partition,
                low,
                high,
                done,
            })
        })
        .collect()
}

/// `wanted` records of one partition from `start` on.
fn read_partition(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    start: i64,
    wanted: usize,
) -> Result<Vec<Record>> {
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(start))?;
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + TIMEOUT;
    let mut records = Vec::with_capacity(wanted);
    while records.len() < wanted {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            tracing::warn!(topic, partition, start, "records not delivered in time");
            return Err(Error::Kafka(KafkaError::MessageConsumption(
                RDKafkaErrorCode::OperationTimedOut,
            )));
        }
        match consumer.poll(left.min(Duration::from_millis(500))) {
            Some(message) => {
                let record = Record::from_message(&message?);
                if record.partition == partition && record.offset >= start {
                    records.push(record);
                }
            }
            None => continue,
        }
    }
    Ok(records)
}
