//! Validated identifiers.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{DomainError, Result};
use crate::event::EventKind;
use crate::time::Timestamp;

/// Longest identifier accepted, in characters.
pub const MAX_ID_LEN: usize = 256;

/// Checks the rules shared by every identifier: non-empty, no surrounding
/// whitespace, at most [`MAX_ID_LEN`] characters, no control characters.
pub(crate) fn validate_id(field: &'static str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(DomainError::Empty { field });
    }
    if value.trim() != value {
        return Err(DomainError::Untrimmed {
            field,
            value: value.to_owned(),
        });
    }
    let len = value.chars().count();
    if len > MAX_ID_LEN {
        return Err(DomainError::TooLong {
            field,
            len,
            max: MAX_ID_LEN,
        });
    }
    if value.chars().any(char::is_control) {
        return Err(DomainError::ControlCharacter {
            field,
            value: value.to_owned(),
        });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        ///
        /// Validated: non-empty, no leading or trailing whitespace, at most
        /// [`MAX_ID_LEN`] characters, no control characters.
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `value` and wraps it.
            ///
            /// # Errors
            /// [`DomainError`] naming the field and the bad value.
            pub fn new(value: impl Into<String>) -> Result<Self> {
                let value = value.into();
                validate_id($field, &value)?;
                Ok(Self(value))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Unwraps the identifier.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = DomainError;
            fn try_from(value: String) -> Result<Self> {
                Self::new(value)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = DomainError;
            fn try_from(value: &str) -> Result<Self> {
                Self::new(value)
            }
        }

        impl std::str::FromStr for $name {
            type Err = DomainError;
            fn from_str(value: &str) -> Result<Self> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
    };
}

id_type!(
    /// A worker's id in the HR system of record; the key of `hr.lifecycle.v1`.
    EmployeeId,
    "employee_id"
);

id_type!(
    /// A person's stable id in hrsync; the key of `directory.changes.v1`.
    PersonId,
    "person_id"
);

id_type!(
    /// The name of an HR source system (for example `workday`).
    SourceSystem,
    "source_system"
);

id_type!(
    /// The id of a lifecycle event.
    ///
    /// Events built by hrsync carry a deterministic id from
    /// [`EventId::derive`]; producers on other teams may use any valid id, but
    /// should derive it the same way so that retries deduplicate.
    EventId,
    "event_id"
);

/// The fixed namespace of hrsync's UUIDv5 event ids. Never change it: every
/// id ever issued depends on it.
pub(crate) const EVENT_ID_NAMESPACE: Uuid =
    Uuid::from_u128(0xd678_91f5_435a_43c4_85b0_3324_3ef2_4473);

/// Version tag of the canonical byte string hashed by [`EventId::derive`].
const EVENT_ID_SCHEME: &[u8] = b"hrsync-event-id/1";

impl EventId {
    /// Derives the deterministic id of a change.
    ///
    /// The id is a UUIDv5 in a fixed hrsync namespace over an unambiguous byte
    /// string: a scheme tag, then `source_system`, `employee_id`, `kind`,
    /// `effective_at` (milliseconds, big endian) and `content`, each prefixed
    /// with its length as a big-endian `u64`. The length prefixes make the
    /// encoding injective, so `("ab", "c")` and `("a", "bc")` differ.
    ///
    /// The same change therefore always gets the same id, whenever and however
    /// often it is imported, and any difference in an input gives a different
    /// id. `content` is the canonical encoding of the payload
    /// ([`crate::LifecyclePayload::canonical_bytes`] for events built by
    /// [`crate::LifecycleEvent::new`]). The time the change was recorded
    /// (`occurred_at`) is deliberately not part of the id.
    pub fn derive(
        source_system: &SourceSystem,
        employee_id: &EmployeeId,
        kind: EventKind,
        effective_at: Timestamp,
        content: &[u8],
    ) -> EventId {
        let mut bytes = Vec::with_capacity(64 + content.len());
        for part in [
            EVENT_ID_SCHEME,
            source_system.as_str().as_bytes(),
            employee_id.as_str().as_bytes(),
            kind.as_str().as_bytes(),
            &effective_at.as_millis().to_be_bytes(),
            content,
        ] {
            bytes.extend_from_slice(&(part.len() as u64).to_be_bytes());
            bytes.extend_from_slice(part);
        }
        EventId(Uuid::new_v5(&EVENT_ID_NAMESPACE, &bytes).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_ids() {
        let id = EmployeeId::new("E-00042").unwrap();
        assert_eq!(id.as_str(), "E-00042");
        assert_eq!(id.to_string(), "E-00042");
        assert!(PersonId::new("p_1 2").is_ok());
        assert!(EventId::new("x".repeat(MAX_ID_LEN)).is_ok());
    }

    #[test]
    fn rejects_empty_and_blank() {
        assert_eq!(
            EmployeeId::new(""),
            Err(DomainError::Empty {
                field: "employee_id"
            })
        );
        assert_eq!(
            PersonId::new("   "),
            Err(DomainError::Empty { field: "person_id" })
        );
    }

    #[test]
    fn rejects_untrimmed() {
        let err = EmployeeId::new(" E1").unwrap_err();
        assert_eq!(
            err,
            DomainError::Untrimmed {
                field: "employee_id",
                value: " E1".into()
            }
        );
        assert!(err.to_string().contains("\" E1\""));
        assert!(EmployeeId::new("E1\t").is_err());
    }

    #[test]
    fn rejects_too_long() {
        let err = EventId::new("x".repeat(MAX_ID_LEN + 1)).unwrap_err();
        assert_eq!(
            err,
            DomainError::TooLong {
                field: "event_id",
                len: MAX_ID_LEN + 1,
                max: MAX_ID_LEN
            }
        );
        // Length is counted in characters, not bytes.
        assert!(EmployeeId::new("é".repeat(MAX_ID_LEN)).is_ok());
    }

    #[test]
    fn rejects_control_characters() {
        for bad in ["a\nb", "a\0b", "a\u{7f}b", "a\u{85}b"] {
            assert!(
                matches!(
                    SourceSystem::new(bad),
                    Err(DomainError::ControlCharacter {
                        field: "source_system",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn serde_validates() {
        let id: EmployeeId = serde_json::from_str("\"E1\"").unwrap();
        assert_eq!(id.as_str(), "E1");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"E1\"");
        assert!(serde_json::from_str::<EmployeeId>("\"\"").is_err());
    }

    fn derive(src: &str, emp: &str, kind: EventKind, at: i64, content: &[u8]) -> EventId {
        EventId::derive(
            &SourceSystem::new(src).unwrap(),
            &EmployeeId::new(emp).unwrap(),
            kind,
            Timestamp::from_millis(at).unwrap(),
            content,
        )
    }

    #[test]
    fn derived_id_is_stable_uuid_v5() {
        let a = derive("workday", "E1", EventKind::Hire, 1_700_000_000_000, b"x");
        let b = derive("workday", "E1", EventKind::Hire, 1_700_000_000_000, b"x");
        assert_eq!(a, b);
        let uuid = Uuid::parse_str(a.as_str()).unwrap();
        assert_eq!(uuid.get_version_num(), 5);
        // Pinned: changing the namespace or the byte layout would silently
        // break deduplication of every event ever published.
        assert_eq!(a.as_str(), "67748bf1-a74f-5cd1-8488-c91f384e11d7");
    }

    #[test]
    fn any_differing_input_changes_the_id() {
        let base = derive("workday", "E1", EventKind::Hire, 1_000, b"abc");
        let variants = [
            derive("bamboohr", "E1", EventKind::Hire, 1_000, b"abc"),
            derive("workday", "E2", EventKind::Hire, 1_000, b"abc"),
            derive("workday", "E1", EventKind::Rehire, 1_000, b"abc"),
            derive("workday", "E1", EventKind::Hire, 1_001, b"abc"),
            derive("workday", "E1", EventKind::Hire, 1_000, b"abd"),
            derive("workday", "E1", EventKind::Hire, 1_000, b""),
        ];
        for v in &variants {
            assert_ne!(&base, v);
        }
    }

    #[test]
    fn parts_are_unambiguous() {
        // Moving bytes from one part to the next must not collide.
        assert_ne!(
            derive("ab", "c", EventKind::Move, 0, b""),
            derive("a", "bc", EventKind::Move, 0, b"")
        );
    }
}
