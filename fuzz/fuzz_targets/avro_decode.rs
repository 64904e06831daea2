//! Avro messages of every contract (`hr.lifecycle.v1`,
//! `directory.changes.v1`, `provisioning.audit.v1`) through the decoders
//! that consumers call, single-object framing included.
//!
//! Input: one selector byte, then bytes. The selector's value modulo 3
//! picks the contract. Bits 2 and up pick the framing: 0 takes the bytes as
//! the whole message (marker, fingerprint and all), otherwise the target
//! writes a valid header with the fingerprint of one of the contract's
//! schema versions (current or released) and the bytes are the datum, so
//! the fuzzer reaches the datum decoder without guessing 8 bytes.
//!
//! Checked beyond "no panic": a decoded value encodes with the current
//! schema and decodes back equal; for lifecycle events, whatever the direct
//! (hot path) reader accepts, the generic reader decodes to the same event.
#![no_main]

use std::sync::LazyLock;

use hrsync_schema::{fingerprint_of_json, framing, schemas, Contract};
use libfuzzer_sys::fuzz_target;

/// Every schema version's fingerprint, per contract in [`Contract::ALL`]
/// order.
static FINGERPRINTS: LazyLock<Vec<Vec<u64>>> = LazyLock::new(|| {
    Contract::ALL
        .iter()
        .map(|contract| {
            let file = contract.schema_file();
            std::iter::once(file.current)
                .chain(file.history.iter().map(|h| h.text))
                .map(|text| fingerprint_of_json(text).expect("an embedded schema"))
                .collect()
        })
        .collect()
});

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    assert_eq!(schemas().len(), Contract::ALL.len());
    let index = usize::from(selector % 3);
    let contract = Contract::ALL[index];
    let framing_choice = usize::from(selector >> 2);
    let message = if framing_choice == 0 {
        rest.to_vec()
    } else {
        let versions = &FINGERPRINTS[index];
        let mut message = Vec::with_capacity(framing::HEADER_LEN + rest.len());
        framing::write_header(
            versions[(framing_choice - 1) % versions.len()],
            &mut message,
        );
        message.extend_from_slice(rest);
        message
    };
    match contract {
        Contract::Lifecycle => {
            let direct = hrsync_schema::decode_lifecycle_direct(&message);
            let generic = hrsync_schema::decode_lifecycle_generic(&message);
            if let Some(event) = &direct {
                assert_eq!(
                    generic.as_ref(),
                    Ok(event),
                    "the direct reader accepted what the generic one reads otherwise"
                );
            }
            if let Ok(event) = hrsync_schema::decode_lifecycle(&message) {
                let bytes = hrsync_schema::encode_lifecycle(&event)
                    .unwrap_or_else(|e| panic!("a decoded event does not encode: {e}"));
                assert_eq!(hrsync_schema::decode_lifecycle(&bytes), Ok(event));
            }
        }
        Contract::DirectoryChanges => {
            if let Ok(change) = hrsync_schema::decode_directory_change(&message) {
                let bytes = hrsync_schema::encode_directory_change(&change)
                    .unwrap_or_else(|e| panic!("a decoded change does not encode: {e}"));
                assert_eq!(hrsync_schema::decode_directory_change(&bytes), Ok(change));
            }
        }
        Contract::Audit => {
            if let Ok(audit) = hrsync_schema::decode_audit(&message) {
                let bytes = hrsync_schema::encode_audit(&audit)
                    .unwrap_or_else(|e| panic!("a decoded audit record does not encode: {e}"));
                assert_eq!(hrsync_schema::decode_audit(&bytes), Ok(audit));
            }
        }
    }
});
