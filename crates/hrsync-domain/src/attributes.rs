//! Worker attributes and the changes a Move applies to them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{DomainError, Result};
use crate::ids::{validate_id, EmployeeId};

/// Kind of employment relationship.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EmploymentType {
    /// A regular employee.
    Employee,
    /// An external contractor.
    Contractor,
    /// An intern.
    Intern,
}

impl EmploymentType {
    /// Every variant, in schema symbol order.
    pub const ALL: [EmploymentType; 3] = [Self::Employee, Self::Contractor, Self::Intern];

    /// The schema symbol (`EMPLOYEE`, `CONTRACTOR`, `INTERN`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Employee => "EMPLOYEE",
            Self::Contractor => "CONTRACTOR",
            Self::Intern => "INTERN",
        }
    }

    /// Parses a schema symbol.
    ///
    /// # Errors
    /// [`DomainError::UnknownSymbol`] naming the bad value.
    pub fn parse(value: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == value)
            .ok_or_else(|| DomainError::UnknownSymbol {
                field: "employment_type",
                value: value.to_owned(),
                expected: "EMPLOYEE, CONTRACTOR, INTERN",
            })
    }
}

impl fmt::Display for EmploymentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The standard attributes: the one list of them in hrsync.
///
/// Each line names the [`Attribute`] variant, the [`WorkerAttributes`] field
/// (also the canonical name, the Avro field and the `person` key in
/// expressions) and its type; the order is the canonical order. The macro
/// below generates the enum, the struct and their tables from it; the codec,
/// ingest and expressions iterate [`Attribute::STANDARD`]. Adding an
/// attribute: `docs/attributes.md`.
macro_rules! standard_attributes {
    ($(
        $(#[doc = $doc:literal])+
        $variant:ident $field:ident: $ty:ty,
    )+) => {
        /// The canonical name of a worker attribute, as used by
        /// `AttributeChange.attribute` in the schema.
        ///
        /// The declaration order is the canonical order: [`WorkerAttributes::diff`]
        /// emits changes in it, custom attributes last, sorted by key.
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub enum Attribute {
            $(
                #[doc = concat!("`", stringify!($field), "`:")]
                $(#[doc = $doc])+
                $variant,
            )+
            /// `custom.<key>`: a source-specific attribute. Holds the key only.
            Custom(String),
        }

        /// A standard attribute: an [`Attribute`] other than
        /// [`Attribute::Custom`], as a `Copy` value (for tables keyed by
        /// attribute, like an HR source's column mapping).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum StandardAttribute {
            $(
                #[doc = concat!("`", stringify!($field), "`.")]
                $variant,
            )+
        }

        impl StandardAttribute {
            /// Every standard attribute, in canonical order.
            pub const ALL: [StandardAttribute; Attribute::STANDARD.len()] = [$(Self::$variant),+];

            /// The canonical name.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => stringify!($field),)+
                }
            }
        }

        impl From<StandardAttribute> for Attribute {
            fn from(value: StandardAttribute) -> Self {
                match value {
                    $(StandardAttribute::$variant => Self::$variant,)+
                }
            }
        }

        impl Attribute {
            /// Every attribute except [`Attribute::Custom`], in canonical order.
            pub const STANDARD: [Attribute; [$(stringify!($field)),+].len()] =
                [$(Self::$variant),+];

            /// The canonical names of [`Attribute::STANDARD`], in the same order.
            pub const STANDARD_NAMES: [&'static str; Self::STANDARD.len()] =
                [$(stringify!($field)),+];

            /// The standard names, comma separated (for error messages).
            const EXPECTED: &'static str = comma_list!($($field),+);

            /// The canonical name of a standard attribute; `None` for a
            /// custom one.
            pub fn standard_name(&self) -> Option<&'static str> {
                match self {
                    $(Self::$variant => Some(stringify!($field)),)+
                    Self::Custom(_) => None,
                }
            }

            /// The canonical name; `custom.<key>` for custom attributes (the
            /// only case that allocates).
            pub fn as_str(&self) -> Cow<'static, str> {
                match self {
                    $(Self::$variant => Cow::Borrowed(stringify!($field)),)+
                    Self::Custom(key) => Cow::Owned(format!("{CUSTOM_PREFIX}{key}")),
                }
            }

            /// The type of the attribute's value (custom attributes are
            /// optional text).
            pub fn value_type(&self) -> AttributeType {
                match self {
                    $(Self::$variant => <$ty as Slot>::TYPE,)+
                    Self::Custom(_) => AttributeType::OptionalText,
                }
            }
        }

        /// The HR attributes of a worker, mirroring the `WorkerAttributes` record.
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub struct WorkerAttributes {
            $(
                $(#[doc = $doc])+
                pub $field: $ty,
            )+
            /// Source-specific attributes, addressed as `custom.<key>`. Sorted by key.
            pub custom: BTreeMap<String, String>,
        }

        impl WorkerAttributes {
            /// Every required attribute empty (or its first symbol), every
            /// optional one unset: the start of [`WorkerAttributes::new`]
            /// and of decoders that then [`WorkerAttributes::set`] each one.
            pub fn blank() -> Self {
                Self {
                    $($field: <$ty as Slot>::blank(),)+
                    custom: BTreeMap::new(),
                }
            }

            /// The value of one attribute as text, `None` if unset.
            pub fn text(&self, attribute: &Attribute) -> Option<&str> {
                match attribute {
                    $(Attribute::$variant => Slot::text(&self.$field),)+
                    Attribute::Custom(key) => self.custom.get(key).map(String::as_str),
                }
            }

            /// Sets one attribute to `value`; an unset `value` clears it.
            ///
            /// On error `self` is unchanged.
            ///
            /// # Errors
            /// [`DomainError::RequiredAttributeCleared`] when clearing a
            /// required attribute; [`DomainError::UnknownSymbol`] for a bad
            /// employment type; an identifier error for a bad `manager_id`.
            pub fn set(&mut self, attribute: &Attribute, value: AttributeValue) -> Result<()> {
                match attribute {
                    $(
                        Attribute::$variant => {
                            self.$field = Slot::from_value(value, stringify!($field))?;
                        }
                    )+
                    Attribute::Custom(key) => match value.into_text() {
                        Some(v) => {
                            self.custom.insert(key.clone(), v);
                        }
                        None => {
                            self.custom.remove(key);
                        }
                    },
                }
                Ok(())
            }
        }
    };
}

/// `a, b, c` from the identifiers `a`, `b`, `c`.
macro_rules! comma_list {
    ($first:ident $(, $rest:ident)*) => {
        concat!(stringify!($first) $(, ", ", stringify!($rest))*)
    };
}

standard_attributes! {
    /// Legal given (first) name (required).
    GivenName given_name: String,
    /// Legal family (last) name (required).
    FamilyName family_name: String,
    /// Name the worker prefers to be called.
    PreferredName preferred_name: Option<String>,
    /// Full name for display.
    DisplayName display_name: Option<String>,
    /// Work e-mail address.
    WorkEmail work_email: Option<String>,
    /// Personal e-mail address.
    PersonalEmail personal_email: Option<String>,
    /// Work phone number.
    Phone phone: Option<String>,
    /// Job title.
    Title title: Option<String>,
    /// Department name.
    Department department: Option<String>,
    /// Employee id of the worker's manager.
    ManagerId manager_id: Option<EmployeeId>,
    /// Work location.
    Location location: Option<String>,
    /// Cost center code.
    CostCenter cost_center: Option<String>,
    /// Kind of employment (required).
    EmploymentType employment_type: EmploymentType,
}

/// The type of a standard attribute's value, as the Avro schemas carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeType {
    /// Always set: Avro `string`.
    Text,
    /// May be unset: Avro `["null", "string"]`.
    OptionalText,
    /// Always set: the Avro enum `EmploymentType`, in [`EmploymentType::ALL`]
    /// order.
    EmploymentType,
}

/// A new value for a standard attribute, in the form a decoder holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue {
    /// Text; `None` clears the attribute.
    Text(Option<String>),
    /// An employment type.
    EmploymentType(EmploymentType),
}

impl AttributeValue {
    fn into_text(self) -> Option<String> {
        match self {
            Self::Text(v) => v,
            Self::EmploymentType(t) => Some(t.as_str().to_owned()),
        }
    }
}

/// A field type of [`WorkerAttributes`]: how it holds an attribute's value.
trait Slot: Sized {
    /// The value's type in the schemas.
    const TYPE: AttributeType;
    /// The value of [`WorkerAttributes::blank`].
    fn blank() -> Self;
    /// The value as text, `None` if unset.
    fn text(&self) -> Option<&str>;
    /// The field holding `value`, validated; `attribute` names it in errors.
    fn from_value(value: AttributeValue, attribute: &'static str) -> Result<Self>;
}

impl Slot for String {
    const TYPE: AttributeType = AttributeType::Text;
    fn blank() -> Self {
        String::new()
    }
    fn text(&self) -> Option<&str> {
        Some(self)
    }
    fn from_value(value: AttributeValue, attribute: &'static str) -> Result<Self> {
        value
            .into_text()
            .ok_or(DomainError::RequiredAttributeCleared { attribute })
    }
}

impl Slot for Option<String> {
    const TYPE: AttributeType = AttributeType::OptionalText;
    fn blank() -> Self {
        None
    }
    fn text(&self) -> Option<&str> {
        self.as_deref()
    }
    fn from_value(value: AttributeValue, _: &'static str) -> Result<Self> {
        Ok(value.into_text())
    }
}

impl Slot for Option<EmployeeId> {
    const TYPE: AttributeType = AttributeType::OptionalText;
    fn blank() -> Self {
        None
    }
    fn text(&self) -> Option<&str> {
        self.as_ref().map(EmployeeId::as_str)
    }
    fn from_value(value: AttributeValue, _: &'static str) -> Result<Self> {
        value.into_text().map(EmployeeId::new).transpose()
    }
}

impl Slot for EmploymentType {
    const TYPE: AttributeType = AttributeType::EmploymentType;
    fn blank() -> Self {
        EmploymentType::ALL[0]
    }
    fn text(&self) -> Option<&str> {
        Some(self.as_str())
    }
    fn from_value(value: AttributeValue, attribute: &'static str) -> Result<Self> {
        match value {
            AttributeValue::EmploymentType(t) => Ok(t),
            AttributeValue::Text(Some(s)) => EmploymentType::parse(&s),
            AttributeValue::Text(None) => Err(DomainError::RequiredAttributeCleared { attribute }),
        }
    }
}

/// Prefix of custom attribute names.
const CUSTOM_PREFIX: &str = "custom.";

impl Attribute {
    /// Parses a canonical attribute name or `custom.<key>`.
    ///
    /// The key of a custom attribute follows the identifier rules
    /// (non-empty, trimmed, no control characters).
    ///
    /// # Errors
    /// [`DomainError::UnknownAttribute`] or an identifier error for the key.
    pub fn parse(name: &str) -> Result<Self> {
        if let Some(key) = name.strip_prefix(CUSTOM_PREFIX) {
            validate_id("custom attribute key", key)?;
            return Ok(Self::Custom(key.to_owned()));
        }
        Self::STANDARD
            .into_iter()
            .find(|a| a.standard_name() == Some(name))
            .ok_or_else(|| DomainError::UnknownAttribute {
                value: name.to_owned(),
                expected: Self::EXPECTED,
            })
    }

    /// Whether every worker must have this attribute (it cannot be cleared).
    pub fn is_required(&self) -> bool {
        matches!(
            self.value_type(),
            AttributeType::Text | AttributeType::EmploymentType
        )
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

impl TryFrom<String> for Attribute {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self> {
        Self::parse(&value)
    }
}

impl From<Attribute> for String {
    fn from(value: Attribute) -> String {
        value.as_str().into_owned()
    }
}

/// A new value for one attribute; `None` clears it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AttributeChange {
    /// Which attribute changes.
    pub attribute: Attribute,
    /// The new value as text (an [`EmploymentType`] symbol for
    /// `employment_type`); `None` clears the attribute.
    pub value: Option<String>,
}

impl AttributeChange {
    /// A change setting `attribute` to `value`.
    pub fn set(attribute: Attribute, value: impl Into<String>) -> Self {
        Self {
            attribute,
            value: Some(value.into()),
        }
    }

    /// A change clearing `attribute`.
    pub fn clear(attribute: Attribute) -> Self {
        Self {
            attribute,
            value: None,
        }
    }
}

impl WorkerAttributes {
    /// A worker with the required attributes and nothing else.
    pub fn new(
        given_name: impl Into<String>,
        family_name: impl Into<String>,
        employment_type: EmploymentType,
    ) -> Self {
        Self {
            given_name: given_name.into(),
            family_name: family_name.into(),
            employment_type,
            ..Self::blank()
        }
    }

    /// The value of one attribute as text, `None` if unset.
    pub fn get(&self, attribute: &Attribute) -> Option<Cow<'_, str>> {
        self.text(attribute).map(Cow::Borrowed)
    }

    /// Every set attribute with its text value, in canonical order (standard
    /// attributes first, then custom ones sorted by key).
    pub fn values(&self) -> Vec<(Attribute, Cow<'_, str>)> {
        let standard = Attribute::STANDARD
            .into_iter()
            .filter_map(|a| self.get(&a).map(|v| (a, v)));
        let custom = self
            .custom
            .iter()
            .map(|(k, v)| (Attribute::Custom(k.clone()), Cow::Borrowed(v.as_str())));
        standard.chain(custom).collect()
    }

    /// Applies one change.
    ///
    /// On error `self` is unchanged.
    ///
    /// # Errors
    /// As [`WorkerAttributes::set`].
    pub fn apply(&mut self, change: &AttributeChange) -> Result<()> {
        self.set(
            &change.attribute,
            AttributeValue::Text(change.value.clone()),
        )
    }

    /// Applies every change in order, all or nothing.
    ///
    /// # Errors
    /// The first failing change's error; `self` is then unchanged.
    pub fn apply_all<'a>(
        &mut self,
        changes: impl IntoIterator<Item = &'a AttributeChange>,
    ) -> Result<()> {
        let mut next = self.clone();
        for change in changes {
            next.apply(change)?;
        }
        *self = next;
        Ok(())
    }

    /// The changes that turn `old` into `new`: only attributes whose value
    /// differs, in canonical order (standard attributes, then custom ones
    /// sorted by key), a cleared attribute as a `None` value.
    ///
    /// `old.apply_all(&WorkerAttributes::diff(old, new))` yields `new`.
    pub fn diff(old: &WorkerAttributes, new: &WorkerAttributes) -> Vec<AttributeChange> {
        let mut changes: Vec<AttributeChange> = Attribute::STANDARD
            .into_iter()
            .filter_map(|a| {
                let after = new.get(&a);
                (old.get(&a) != after).then(|| AttributeChange {
                    value: after.map(Cow::into_owned),
                    attribute: a,
                })
            })
            .collect();
        let keys: std::collections::BTreeSet<&String> =
            old.custom.keys().chain(new.custom.keys()).collect();
        for key in keys {
            let after = new.custom.get(key);
            if old.custom.get(key) != after {
                changes.push(AttributeChange {
                    attribute: Attribute::Custom(key.clone()),
                    value: after.cloned(),
                });
            }
        }
        changes
    }
}

#[cfg(test)]
#[path = "attributes_tests.rs"]
mod tests;
