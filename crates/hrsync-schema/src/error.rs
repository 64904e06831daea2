//! Errors of the codec.

use crate::contract::Contract;

/// An embedded schema file could not be parsed. Tests guard against it: it
/// can only happen if a broken `.avsc` file was committed. Not the
/// producer's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("embedded schema {file} is invalid: {reason}")]
pub struct SchemaError {
    /// The schema file, relative to `schemas/`.
    pub file: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// Why a schema's JSON text has no Parsing Canonical Form: it is not a
/// well-formed Avro schema. Fix the schema file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalFormError {
    /// The text is not JSON.
    #[error("not valid JSON: {0}")]
    NotJson(String),
    /// A JSON value that is no schema (a number, `true`, ...).
    #[error("{found} is not a schema")]
    NotASchema {
        /// The value, as JSON.
        found: String,
    },
    /// A schema object without its `type` attribute.
    #[error("schema object without \"type\"")]
    NoType,
    /// A record, enum or fixed without a `name`.
    #[error("{kind} without a name")]
    Unnamed {
        /// `record`, `enum` or `fixed`.
        kind: String,
    },
    /// A fixed whose `size` is not a whole number.
    #[error("fixed size {size} is not an integer")]
    BadFixedSize {
        /// The size given, as JSON.
        size: String,
    },
    /// A record whose `fields` is not an array.
    #[error("record fields is not an array")]
    FieldsNotAnArray,
    /// A record field without a `name`.
    #[error("record field without a name")]
    UnnamedField,
    /// A record field without a `type`.
    #[error("record field {name} without a type")]
    UntypedField {
        /// The field's name.
        name: String,
    },
}

/// Why a message could not be decoded.
///
/// Every variant except [`DecodeError::Schema`] is *poison*: the bytes
/// themselves are bad, so retrying cannot help and the message belongs in the
/// stage's dead-letter queue ([`DecodeError::is_poison`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The message ends before the header or the datum is complete.
    #[error("message is truncated: {detail} (got {len} bytes)")]
    Truncated {
        /// Length of the message.
        len: usize,
        /// What was incomplete.
        detail: &'static str,
    },
    /// The message does not start with the single-object marker `C3 01`, so
    /// it is not Avro single-object encoded (wrong serializer, or a
    /// Confluent-framed message).
    #[error(
        "message does not start with the Avro single-object marker C3 01 (found {found:02X?})"
    )]
    BadMarker {
        /// The first bytes of the message.
        found: Vec<u8>,
    },
    /// The writer schema's fingerprint matches no known version of any
    /// contract: written with a schema this build does not know (a newer
    /// version: upgrade, then re-drive from the DLQ) or a foreign schema.
    #[error("{contract} message written with unknown schema fingerprint {fingerprint:#018x}; it is neither a released version of schemas/{file} nor of any other hrsync contract", file = contract.file_name())]
    UnknownFingerprint {
        /// The contract that was expected.
        contract: Contract,
        /// The fingerprint found in the message.
        fingerprint: u64,
    },
    /// The message was written with another contract's schema (for example an
    /// audit record on the lifecycle topic).
    #[error("expected a {expected} message but it was written with the {found} schema; check the producer's topic configuration")]
    WrongContract {
        /// The contract that was expected.
        expected: Contract,
        /// The contract whose schema wrote the message.
        found: Contract,
    },
    /// The datum does not decode with its writer schema (bad lengths, bad
    /// union index, invalid UTF-8, trailing bytes, ...).
    #[error("message body is corrupt: {0}")]
    Corrupt(String),
    /// The datum decodes but a value breaks the domain's rules.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Path of the field, for example `payload.Hire.attributes.manager_id`.
        field: String,
        /// What is wrong, naming the bad value.
        reason: String,
    },
    /// An embedded schema is broken; a bug in this build, not in the message.
    #[error(transparent)]
    Schema(#[from] SchemaError),
}

impl DecodeError {
    /// Whether the message itself is bad (the producer's fault): retrying can
    /// never help, send it to the dead-letter queue. Only
    /// [`DecodeError::Schema`] is not poison.
    pub fn is_poison(&self) -> bool {
        !matches!(self, Self::Schema(_))
    }
}

/// Why a value could not be encoded. Never retryable: encoding the same value
/// fails the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A value does not fit the schema's type (for example a version above
    /// `i64::MAX` for a `long`).
    #[error("cannot encode {field}: {reason}")]
    Invalid {
        /// Path of the field.
        field: String,
        /// Why it does not fit.
        reason: String,
    },
    /// The Avro value did not match the schema; a bug in the mapping.
    #[error("Avro encoding failed: {0}")]
    Avro(String),
    /// An embedded schema is broken; a bug in this build.
    #[error(transparent)]
    Schema(#[from] SchemaError),
}

/// Result with [`DecodeError`] as the default error.
pub type Result<T, E = DecodeError> = std::result::Result<T, E>;
