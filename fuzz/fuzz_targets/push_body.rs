//! Push API request bodies through `hrsync_ingest::push::event_from_body`,
//! the function the `POST /v1/events` handler calls.
//!
//! Checked beyond "no panic": a rejection says what and (for a JSON event
//! that is invalid) where, as a JSON path; an accepted event encodes to
//! Avro and decodes back equal.
#![no_main]

use chrono::{DateTime, Utc};
use hrsync_ingest::push::{event_from_body, BodyError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    // A fixed clock, so that a crash reproduces.
    let now = DateTime::<Utc>::from_timestamp(1_780_000_000, 0).expect("a valid time");
    match event_from_body(body, "push", now) {
        Ok(event) => {
            let bytes = hrsync_schema::encode_lifecycle(&event)
                .unwrap_or_else(|e| panic!("an accepted event does not encode: {e}"));
            let decoded = hrsync_schema::decode_lifecycle(&bytes)
                .unwrap_or_else(|e| panic!("an accepted event does not decode: {e}"));
            assert_eq!(decoded, event, "the event changed through Avro");
        }
        Err(BodyError::NotJson(message)) => {
            assert!(message.contains("line"), "{message}");
        }
        Err(BodyError::Invalid(invalid)) => {
            assert!(!invalid.error.is_empty());
            let path = invalid
                .path
                .as_deref()
                .expect("a rejection names its JSON path");
            assert!(path.starts_with('$'), "{path}");
        }
    }
});
