//! The Avro codec of hrsync's Kafka contracts.
//!
//! * The schemas in `schemas/` (current files and every released version in
//!   `schemas/history/`) are embedded at compile time; see [`schemas`].
//! * Messages use Avro **single-object encoding** ([`framing`]): marker
//!   `C3 01`, the writer schema's CRC-64-AVRO fingerprint, the binary datum.
//!   Encoding always uses the current schema. Decoding looks the fingerprint
//!   up among every known version of the expected [`Contract`], decodes with
//!   that writer schema and resolves the datum to the current schema, so data
//!   written by older producers stays readable.
//! * The mapping between Avro values and `hrsync-domain` types is written out
//!   field by field (no serde), and decoded values are validated by the domain
//!   constructors.
//! * Decoding never panics; every failure is a typed [`DecodeError`] that says
//!   whether the message is poison ([`DecodeError::is_poison`]).
//!
//! The Confluent wire format (magic byte `0` and a registry id) can be added
//! beside [`framing`] later: the first byte tells the two apart.

use apache_avro::types::Value;
use hrsync_domain::{DirectoryChange, LifecycleEvent, ProvisioningAudit};

mod binary;
mod binary_reader;
mod canonical;
mod contract;
mod error;
pub mod framing;
mod mapping;
mod resolve;
mod value;

pub use canonical::{fingerprint as fingerprint_of_json, parsing_canonical_form};
pub use contract::{fingerprint, schemas, Contract, HistoryFile, SchemaFile};
pub use error::{CanonicalFormError, DecodeError, EncodeError, Result, SchemaError};

/// Largest length the Avro decoder accepts for one length-prefixed item
/// (string or bytes length, array or map block count). A corrupt length
/// prefix then fails with [`DecodeError::Corrupt`] instead of exhausting
/// memory.
///
/// 1 MiB, Kafka's default maximum message size: no item of a legitimate
/// message is longer than the message. It is deliberately not larger because
/// `apache-avro` reserves room for an array or map block's item count up
/// front, and each item takes tens of bytes, so the bound on a corrupt count's
/// transient allocation is this value times that size (tens of MiB).
///
/// The setting is process-wide and `apache-avro` keeps the first value set,
/// so every codec function applies it before touching Avro.
pub const MAX_ALLOCATION_BYTES: usize = 1024 * 1024;

/// Applies [`MAX_ALLOCATION_BYTES`]. `apache-avro` keeps the first value it
/// is given for the whole process, so this runs before any decode.
fn limit_allocations() {
    apache_avro::util::max_allocation_bytes(MAX_ALLOCATION_BYTES);
}

fn encode_value(contract: Contract, value: Value) -> Result<Vec<u8>, EncodeError> {
    limit_allocations();
    let registry = contract::registry()?;
    let current = registry.get(contract).current();
    let mut message = Vec::with_capacity(512);
    // The writer validates the value against the schema, then writes the
    // header and the datum.
    let mut writer = current
        .writer
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match writer.write_value_ref(&value, &mut message) {
        Ok(_) => Ok(message),
        Err(e) => {
            // A writer that failed mid-write keeps the partial datum in its
            // buffer and refuses every later write: start a fresh one.
            if let Ok(fresh) = current.new_writer() {
                *writer = fresh;
            }
            Err(EncodeError::Avro(e.to_string()))
        }
    }
}

/// A reader over the datum that remembers any attempt to read past its end.
///
/// `apache-avro` 0.21 decodes a union whose index is cut off by the end of
/// the input as `null` instead of failing, so a message truncated before
/// trailing optional fields would decode "successfully" with those fields
/// lost. Any read past the end means the datum was truncated.
#[derive(Debug)]
struct EofGuard<'a> {
    rest: &'a [u8],
    hit_eof: bool,
}

impl std::io::Read for EofGuard<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.rest.is_empty() && !buf.is_empty() {
            self.hit_eof = true;
        }
        self.rest.read(buf)
    }
}

/// Decodes a message of `contract` into an Avro value shaped by the current
/// schema.
fn decode_value(contract: Contract, message: &[u8]) -> Result<Value> {
    limit_allocations();
    let (fingerprint, _datum) = framing::split_header(message)?;
    let registry = contract::registry()?;
    let schemas = registry.get(contract);
    let writer = match schemas.by_fingerprint(fingerprint) {
        Some(v) => v,
        None => {
            return Err(match registry.owner(fingerprint) {
                Some(found) => DecodeError::WrongContract {
                    expected: contract,
                    found,
                },
                None => DecodeError::UnknownFingerprint {
                    contract,
                    fingerprint,
                },
            })
        }
    };
    // The reader checks the header again (it matches: the writer schema
    // was looked up by it), then decodes the datum.
    let mut reader = EofGuard {
        rest: message,
        hit_eof: false,
    };
    let result = writer.reader.read_value(&mut reader);
    // Check for truncation first: apache-avro turns some early ends into
    // other errors (or none at all).
    if reader.hit_eof {
        return Err(DecodeError::Truncated {
            len: message.len(),
            detail: "the datum ends early",
        });
    }
    let value = result.map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    if !reader.rest.is_empty() {
        return Err(DecodeError::Corrupt(format!(
            "{} bytes left over after the datum",
            reader.rest.len()
        )));
    }
    let current = schemas.current();
    if writer.fingerprint == current.fingerprint {
        return Ok(value);
    }
    resolve::resolve(
        value,
        resolve::Pair {
            writer: &writer.schema,
            writer_names: &writer.names,
            reader: &current.schema,
            reader_names: &current.names,
        },
    )
    .map_err(|reason| {
        DecodeError::Corrupt(format!(
            "cannot resolve data written with {} to {}: {reason}",
            writer.path, current.path
        ))
    })
}

/// Encodes a lifecycle event (`hr.lifecycle.v1`) with the current schema.
///
/// # Errors
/// [`EncodeError`]; never for a valid event.
pub fn encode_lifecycle(event: &LifecycleEvent) -> Result<Vec<u8>, EncodeError> {
    encode_value(Contract::Lifecycle, mapping::lifecycle_to_value(event))
}

/// Decodes a lifecycle event written with any released version of its schema.
///
/// # Errors
/// [`DecodeError`]: bad framing, unknown or foreign schema, corrupt datum,
/// or values that break the domain's rules.
pub fn decode_lifecycle(message: &[u8]) -> Result<LifecycleEvent> {
    if let Some(event) = binary_reader::lifecycle(message) {
        return Ok(event);
    }
    decode_lifecycle_generic(message)
}

/// The direct reader of [`decode_lifecycle`]'s hot path alone: the event,
/// or `None` where it leaves the message to the generic path.
#[doc(hidden)]
pub fn decode_lifecycle_direct(message: &[u8]) -> Option<LifecycleEvent> {
    binary_reader::lifecycle(message)
}

/// [`decode_lifecycle`] through apache-avro's generic path only (the
/// reference the direct reader is tested against).
///
/// # Errors
/// As [`decode_lifecycle`].
#[doc(hidden)]
pub fn decode_lifecycle_generic(message: &[u8]) -> Result<LifecycleEvent> {
    mapping::lifecycle_from_value(decode_value(Contract::Lifecycle, message)?)
}

/// Encodes a directory change (`directory.changes.v1`) with the current
/// schema.
///
/// # Errors
/// [`EncodeError::Invalid`] if `version` exceeds `i64::MAX`.
pub fn encode_directory_change(change: &DirectoryChange) -> Result<Vec<u8>, EncodeError> {
    let mut message = Vec::with_capacity(512);
    framing::write_header(Contract::DirectoryChanges.fingerprint()?, &mut message);
    binary::directory_change(change, message)
}

/// [`encode_directory_change`] through apache-avro's generic writer, which
/// validates the value against the schema: the same bytes, several times
/// slower. The reference the direct writer is tested against.
///
/// # Errors
/// As [`encode_directory_change`].
pub fn encode_directory_change_generic(change: &DirectoryChange) -> Result<Vec<u8>, EncodeError> {
    encode_value(
        Contract::DirectoryChanges,
        mapping::directory_change_to_value(change)?,
    )
}

/// Decodes a directory change written with any released version of its
/// schema.
///
/// # Errors
/// As [`decode_lifecycle`].
pub fn decode_directory_change(message: &[u8]) -> Result<DirectoryChange> {
    mapping::directory_change_from_value(decode_value(Contract::DirectoryChanges, message)?)
}

/// Encodes a provisioning audit record (`provisioning.audit.v1`) with the
/// current schema.
///
/// # Errors
/// [`EncodeError::Invalid`] if a number exceeds its Avro type (`attempt`
/// above `i32::MAX`, `latency_ms` or `version` above `i64::MAX`).
pub fn encode_audit(audit: &ProvisioningAudit) -> Result<Vec<u8>, EncodeError> {
    encode_value(Contract::Audit, mapping::audit_to_value(audit)?)
}

/// Decodes a provisioning audit record written with any released version of
/// its schema. Operations and outcomes added by later versions read as
/// `Unknown`.
///
/// # Errors
/// As [`decode_lifecycle`].
pub fn decode_audit(message: &[u8]) -> Result<ProvisioningAudit> {
    mapping::audit_from_value(decode_value(Contract::Audit, message)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cached writer refuses a value that does not fit the schema and
    /// still encodes the next one (a writer that failed is replaced).
    #[test]
    fn a_failed_encode_does_not_break_the_next_one() {
        assert!(encode_value(Contract::Lifecycle, Value::Null).is_err());
        assert!(encode_value(Contract::Lifecycle, Value::Int(7)).is_err());
        assert!(encode_value(Contract::Audit, Value::Record(Vec::new())).is_err());
        let event = hrsync_domain::LifecycleEvent::new(
            hrsync_domain::SourceSystem::new("workday").unwrap(),
            hrsync_domain::EmployeeId::new("E1").unwrap(),
            hrsync_domain::Timestamp::from_millis(1_700_000_000_000).unwrap(),
            hrsync_domain::Timestamp::from_millis(1_700_000_000_000).unwrap(),
            hrsync_domain::TimeZone::new("UTC").unwrap(),
            hrsync_domain::LifecyclePayload::Terminate(hrsync_domain::Terminate {
                immediate: true,
                last_day_worked: None,
                reason: None,
            }),
        )
        .unwrap();
        let message = encode_lifecycle(&event).unwrap();
        assert_eq!(decode_lifecycle(&message).unwrap(), event);
    }
}
