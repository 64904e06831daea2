//! The consumed positions (`projector_offset`), stored in each batch's
//! transaction with the state they produced: the projector's consumers
//! resume from here, not from Kafka's committed offsets.

use super::{BatchTx, Store};
use crate::error::Result;

/// A consumed position to store with the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Consumer name (group).
    pub consumer: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The next offset to read.
    pub next_offset: i64,
}

impl BatchTx {
    /// Upserts the consumed positions.
    pub(crate) async fn store_positions(&mut self, positions: &[Position]) -> Result<()> {
        let tx = self.get().await?;
        for p in positions {
            sqlx::query(
                "INSERT INTO projector_offset (consumer, topic, kafka_partition, next_offset) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (consumer, topic, kafka_partition) \
                 DO UPDATE SET next_offset = excluded.next_offset",
            )
            .bind(&p.consumer)
            .bind(&p.topic)
            .bind(i64::from(p.partition))
            .bind(p.next_offset)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}

impl Store {
    /// The stored next offset of a partition, if any.
    pub(crate) async fn stored_offset(
        &self,
        consumer: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT next_offset FROM projector_offset \
             WHERE consumer = $1 AND topic = $2 AND kafka_partition = $3",
        )
        .bind(consumer)
        .bind(topic)
        .bind(i64::from(partition))
        .fetch_optional(self.db.pool())
        .await?)
    }
}
