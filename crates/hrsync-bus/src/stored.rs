//! Consumption at offsets the stage stores itself.
//!
//! Stages that keep their state in SQL (the projector) store the offset of
//! every record they applied in the same transaction as the state it
//! produced, so Kafka's group offsets are not used at all: the consumer is
//! in no group (no rebalances), is assigned every partition of its topic at
//! the offsets the stage stored ([`Consumer::assign_at`]), and hands over
//! records in batches ([`Consumer::batches`]) for the stage to apply in one
//! transaction each. One process owns one store, so one consumer reads each
//! partition.

use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::consumer::{bound_prefetch, GroupContext, STATISTICS_INTERVAL_MS};
use crate::{Consumer, ConsumerSettings, Error, KafkaConfig, Record, Result};

/// How long a metadata or watermark request may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(30);

/// How a batch is gathered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Most records in one batch.
    pub max: usize,
    /// How long after a batch's first record more are waited for (zero:
    /// what is already fetched).
    pub linger: Duration,
}

/// Records gathered into one batch, each prepared by the stage's decoder.
#[derive(Debug)]
pub struct Batch<D> {
    /// The records, in the order consumed.
    pub records: Vec<Record>,
    /// What the decoder made of each record.
    pub decoded: Vec<D>,
    /// From the first record to the last one taken into the batch.
    pub gather: Duration,
}

/// Batches gathered and decoded on a task of their own, one batch ahead of
/// the stage at most; the task ends when this is dropped.
#[derive(Debug)]
pub struct Batches<D> {
    ready: mpsc::Receiver<Batch<D>>,
    task: JoinHandle<()>,
}

impl<D> Batches<D> {
    /// The next batch; `None` once the gatherer ended (on shutdown). A
    /// panic of the gatherer carries on here.
    pub async fn next(&mut self) -> Option<Batch<D>> {
        if let Some(batch) = self.ready.recv().await {
            return Some(batch);
        }
        match (&mut self.task).await {
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            _ => None,
        }
    }
}

impl<D> Drop for Batches<D> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Consumer {
    /// A consumer that reads at offsets the stage stores itself (see the
    /// module docs): in no group, and assigned its partitions by
    /// [`Consumer::assign_at`]. `settings.group_id` names it (client id
    /// `{stage}-{group_id}`, the lag metric's group); its first topic is
    /// the one it reads.
    ///
    /// # Errors
    /// The client cannot be created; no topic is named.
    pub fn at_stored_offsets(config: &KafkaConfig, settings: ConsumerSettings) -> Result<Self> {
        if settings.topics.len() != 1 {
            return Err(Error::Config(format!(
                "a consumer at stored offsets reads one topic, not {}",
                settings.topics.len()
            )));
        }
        let mut cfg = config.client_config(&format!("{}-{}", settings.stage, settings.group_id))?;
        // Offsets are the stage's: nothing is stored or committed here.
        cfg.set("group.id", &settings.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
        if let Some(wait) = settings.fetch_wait {
            cfg.set("fetch.wait.max.ms", wait.as_millis().to_string());
        }
        bound_prefetch(&mut cfg, config);
        let inner: StreamConsumer<GroupContext> = cfg
            .create_with_context(GroupContext::new(&settings.stage, &settings.group_id))
            .map_err(Error::Client)?;
        Ok(Consumer {
            inner,
            settings,
            kafka: config.clone(),
        })
    }

    fn topic(&self) -> &str {
        self.settings.topics.first().map_or("", String::as_str)
    }

    /// Every partition of the topic with the first offset the broker still
    /// has in it (records before it were removed); none if the topic does
    /// not exist.
    ///
    /// # Errors
    /// The broker cannot be asked.
    pub fn log_starts(&self) -> Result<Vec<(i32, i64)>> {
        let topic = self.topic();
        let partitions =
            crate::topics::partition_ids(self.inner.client(), topic, METADATA_TIMEOUT)?;
        partitions
            .into_iter()
            .map(|partition| {
                let (low, _) = self
                    .inner
                    .fetch_watermarks(topic, partition, METADATA_TIMEOUT)?;
                Ok((partition, low))
            })
            .collect()
    }

    /// Assigns the partitions `starts` names, each at its offset (`None`:
    /// from the beginning).
    ///
    /// # Errors
    /// The assignment is refused.
    pub fn assign_at(&self, starts: &[(i32, Option<i64>)]) -> Result<()> {
        let mut assignment = TopicPartitionList::new();
        for (partition, start) in starts {
            let offset = start.map_or(Offset::Beginning, Offset::Offset);
            assignment.add_partition_offset(self.topic(), *partition, offset)?;
        }
        self.inner.assign(&assignment)?;
        Ok(())
    }

    /// Gathers the assigned records into batches, each record decoded with
    /// `decode` (CPU work done beside the stage's): waits for a batch's
    /// first record, then takes what arrives within the linger, up to the
    /// maximum, until `shutdown`.
    pub fn batches<D: Send + 'static>(
        self,
        settings: BatchSettings,
        decode: impl Fn(&Record) -> D + Send + 'static,
        shutdown: CancellationToken,
    ) -> Batches<D> {
        let (batches, ready) = mpsc::channel(1);
        let task = tokio::spawn(async move {
            while let Some(records) = self.gather(settings, &shutdown).await {
                let decoded = records.0.iter().map(&decode).collect();
                let batch = Batch {
                    records: records.0,
                    decoded,
                    gather: records.1,
                };
                if batches.send(batch).await.is_err() {
                    return;
                }
            }
        });
        Batches { ready, task }
    }

    /// The next batch of records and how long it took from the first;
    /// `None` on shutdown.
    async fn gather(
        &self,
        settings: BatchSettings,
        shutdown: &CancellationToken,
    ) -> Option<(Vec<Record>, Duration)> {
        let topic = self.topic();
        loop {
            let first = tokio::select! {
                biased;
                () = shutdown.cancelled() => return None,
                message = self.inner.recv() => message,
            };
            let gathering = Instant::now();
            let mut records = Vec::with_capacity(settings.max);
            match first {
                Ok(message) => records.push(Record::from_message(&message)),
                Err(error) => {
                    tracing::warn!(topic, %error, "kafka consumer error");
                    continue;
                }
            }
            // (With no linger, what is already fetched: a zero timeout
            // still polls once.)
            let deadline = tokio::time::Instant::now() + settings.linger;
            while records.len() < settings.max {
                match tokio::time::timeout_at(deadline, self.inner.recv()).await {
                    Ok(Ok(message)) => records.push(Record::from_message(&message)),
                    Ok(Err(error)) => tracing::warn!(topic, %error, "kafka consumer error"),
                    Err(_) => break,
                }
            }
            return Some((records, gathering.elapsed()));
        }
    }
}
