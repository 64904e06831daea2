//! Metric names of the Kafka layer, defined in one place. Labels stay
//! low-cardinality: topic, stage, outcome.

pub(crate) const RECORDS_PRODUCED: &str = "hrsync_bus_records_produced_total";
pub(crate) const PRODUCE_FAILURES: &str = "hrsync_bus_produce_failures_total";
pub(crate) const RECORDS_CONSUMED: &str = "hrsync_bus_records_consumed_total";
pub(crate) const HANDLER_RETRIES: &str = "hrsync_bus_handler_retries_total";
pub(crate) const DLQ_RECORDS: &str = "hrsync_bus_dlq_records_total";
pub(crate) const REBALANCES: &str = "hrsync_bus_rebalances_total";
pub(crate) const PROCESSING_SECONDS: &str = "hrsync_bus_processing_seconds";
pub(crate) const CONSUMER_LAG: &str = "hrsync_bus_consumer_lag";
pub(crate) const CONSUMER_STALLED: &str = "hrsync_bus_consumer_stalled";
pub(crate) const CONSUMER_REJOINS: &str = "hrsync_bus_consumer_rejoins_total";
pub(crate) const RECORDS_DROPPED_ON_REVOKE: &str = "hrsync_bus_records_dropped_on_revoke_total";
