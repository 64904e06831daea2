//! The error type of the domain crate.

/// A value that does not satisfy the domain's rules.
///
/// Every variant names the field and the offending value, so that whoever
/// produced the value (an HR export, a producer on another team) can fix it.
/// Domain errors are never retryable: the same input fails the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A required text value is empty or only whitespace.
    #[error("{field} must not be empty")]
    Empty {
        /// Name of the field.
        field: &'static str,
    },
    /// A text value has leading or trailing whitespace.
    #[error("{field} {value:?} has leading or trailing whitespace; trim it before use")]
    Untrimmed {
        /// Name of the field.
        field: &'static str,
        /// The offending value.
        value: String,
    },
    /// A text value is longer than allowed.
    #[error("{field} is {len} characters long; at most {max} are allowed")]
    TooLong {
        /// Name of the field.
        field: &'static str,
        /// Length of the value, in characters.
        len: usize,
        /// The maximum length.
        max: usize,
    },
    /// A text value contains a control character (newline, NUL, ...).
    #[error("{field} {value:?} contains a control character")]
    ControlCharacter {
        /// Name of the field.
        field: &'static str,
        /// The offending value.
        value: String,
    },
    /// A time zone name that is not in the IANA time zone database.
    #[error("{field} {value:?} is not an IANA time zone name (for example \"Europe/Berlin\")")]
    UnknownTimeZone {
        /// Name of the field.
        field: &'static str,
        /// The offending value.
        value: String,
    },
    /// A millisecond timestamp outside the range chrono can represent.
    #[error("{field} {millis} ms since the epoch is out of the representable range")]
    TimestampOutOfRange {
        /// Name of the field.
        field: &'static str,
        /// The offending value.
        millis: i64,
    },
    /// An attribute name that is neither canonical nor `custom.<key>`.
    #[error("unknown attribute {value:?}; expected one of {expected} or custom.<key>")]
    UnknownAttribute {
        /// The offending name.
        value: String,
        /// The canonical names, comma separated.
        expected: &'static str,
    },
    /// A value that is not a symbol of the named enum.
    #[error("{field} {value:?} is not one of {expected}")]
    UnknownSymbol {
        /// Name of the field.
        field: &'static str,
        /// The offending value.
        value: String,
        /// The allowed symbols, comma separated.
        expected: &'static str,
    },
    /// A change that would clear an attribute every worker must have.
    #[error("attribute {attribute} is required and cannot be cleared")]
    RequiredAttributeCleared {
        /// The attribute's canonical name.
        attribute: &'static str,
    },
    /// A Move without any change.
    #[error("a move must change at least one attribute")]
    EmptyMove,
    /// A Move that changes the same attribute twice.
    #[error("a move changes attribute {attribute} more than once")]
    DuplicateChange {
        /// The attribute's canonical name.
        attribute: String,
    },
    /// A number outside the range the field allows.
    #[error("{field} {value} is out of range: {reason}")]
    OutOfRange {
        /// Name of the field.
        field: &'static str,
        /// The offending value.
        value: i128,
        /// What the range is.
        reason: &'static str,
    },
}

/// Result with [`DomainError`] as the default error.
pub type Result<T, E = DomainError> = std::result::Result<T, E>;
