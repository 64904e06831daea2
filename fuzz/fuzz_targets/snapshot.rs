//! HR snapshots (CSV and JSON Lines) through `hrsync_ingest::snapshot::parse`.
//!
//! Input: one selector byte, then the file. The selector's low bit picks
//! the format (0 CSV, 1 JSON Lines), the next bit the source settings (the
//! defaults, or a mapped source like the tests' BambooHR one).
//!
//! Checked beyond "no panic": a rejection lists at least one problem and
//! names the file; an accepted snapshot plans its events against an empty
//! baseline, every planned event encodes to Avro and decodes back equal,
//! and importing the same snapshot again plans nothing.
#![no_main]

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use hrsync_domain::StandardAttribute;
use hrsync_ingest::diff::diff;
use hrsync_ingest::snapshot::{parse, Snapshot};
use hrsync_ingest::source::{ExtraColumns, Field, Format, SourceConfig, WorkerStatus};
use libfuzzer_sys::fuzz_target;

static SOURCES: LazyLock<[SourceConfig; 2]> = LazyLock::new(|| {
    let defaults = SourceConfig::new("workday");
    let mut mapped = SourceConfig::new("bamboo");
    mapped
        .columns
        .insert(Field::EmployeeId, "Employee #".into());
    mapped
        .columns
        .insert(Field::Status, "Employment Status".into());
    mapped
        .columns
        .insert(Field::Attribute(StandardAttribute::EmploymentType), "Worker Type".into());
    mapped
        .status_values
        .insert("Working".into(), WorkerStatus::Active);
    mapped
        .status_values
        .insert("Gone".into(), WorkerStatus::Terminated);
    mapped
        .employment_type_values
        .insert("Contingent".into(), "contractor".into());
    mapped.default_time_zone = Some("UTC".into());
    mapped.date_formats = vec!["%Y-%m-%d".into(), "%m/%d/%Y".into()];
    mapped.extra_columns = ExtraColumns::Ignore;
    mapped.full_snapshot = false;
    for source in [&defaults, &mapped] {
        source.validate().expect("the fuzz sources are valid");
    }
    [defaults, mapped]
});

/// A fixed clock, so that a crash reproduces.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_780_000_000, 0).expect("a valid time")
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, file)) = data.split_first() else {
        return;
    };
    let (format, name) = if selector & 1 == 0 {
        (Format::Csv, "fuzz.csv")
    } else {
        (Format::Jsonl, "fuzz.jsonl")
    };
    let source = &SOURCES[usize::from((selector >> 1) & 1)];
    let snapshot = match parse(source, name, file, format) {
        Ok(snapshot) => snapshot,
        Err(error) => {
            assert!(!error.errors.is_empty(), "a rejection lists its problems");
            assert!(
                error.errors.iter().all(|e| e.file == name),
                "every problem names the file: {error}"
            );
            return;
        }
    };
    let plan = diff(source, &Snapshot::default(), snapshot.clone(), now())
        .unwrap_or_else(|e| panic!("an accepted snapshot cannot be planned: {e}"));
    for planned in &plan.events {
        let bytes = hrsync_schema::encode_lifecycle(&planned.event)
            .unwrap_or_else(|e| panic!("a planned event does not encode: {e}"));
        let decoded = hrsync_schema::decode_lifecycle(&bytes)
            .unwrap_or_else(|e| panic!("a planned event does not decode: {e}"));
        assert_eq!(decoded, planned.event, "the event changed through Avro");
    }
    let again = diff(source, &plan.next_baseline, snapshot, now())
        .unwrap_or_else(|e| panic!("the same snapshot cannot be planned again: {e}"));
    assert!(
        again.events.is_empty(),
        "importing the same snapshot again plans {} event(s)",
        again.events.len()
    );
});
