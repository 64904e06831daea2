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

/// The canonical name of a worker attribute, as used by
/// `AttributeChange.attribute` in the schema.
///
/// The declaration order is the canonical order: [`WorkerAttributes::diff`]
/// emits changes in it, custom attributes last, sorted by key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Attribute {
    /// `given_name` (required).
    GivenName,
    /// `family_name` (required).
    FamilyName,
    /// `preferred_name`.
    PreferredName,
    /// `display_name`.
    DisplayName,
    /// `work_email`.
    WorkEmail,
    /// `personal_email`.
    PersonalEmail,
    /// `phone`.
    Phone,
    /// `title`.
    Title,
    /// `department`.
    Department,
    /// `manager_id`: an employee id.
    ManagerId,
    /// `location`.
    Location,
    /// `cost_center`.
    CostCenter,
    /// `employment_type` (required): an [`EmploymentType`] symbol.
    EmploymentType,
    /// `custom.<key>`: a source-specific attribute. Holds the key only.
    Custom(String),
}

/// Prefix of custom attribute names.
const CUSTOM_PREFIX: &str = "custom.";

impl Attribute {
    /// Every attribute except [`Attribute::Custom`], in canonical order.
    pub const STANDARD: [Attribute; 13] = [
        Self::GivenName,
        Self::FamilyName,
        Self::PreferredName,
        Self::DisplayName,
        Self::WorkEmail,
        Self::PersonalEmail,
        Self::Phone,
        Self::Title,
        Self::Department,
        Self::ManagerId,
        Self::Location,
        Self::CostCenter,
        Self::EmploymentType,
    ];

    const EXPECTED: &'static str = "given_name, family_name, preferred_name, display_name, \
        work_email, personal_email, phone, title, department, manager_id, location, cost_center, \
        employment_type";

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
            .find(|a| a.as_str() == name)
            .ok_or_else(|| DomainError::UnknownAttribute {
                value: name.to_owned(),
                expected: Self::EXPECTED,
            })
    }

    /// The canonical name; `custom.<key>` for custom attributes (the only
    /// case that allocates).
    pub fn as_str(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Self::GivenName => "given_name",
            Self::FamilyName => "family_name",
            Self::PreferredName => "preferred_name",
            Self::DisplayName => "display_name",
            Self::WorkEmail => "work_email",
            Self::PersonalEmail => "personal_email",
            Self::Phone => "phone",
            Self::Title => "title",
            Self::Department => "department",
            Self::ManagerId => "manager_id",
            Self::Location => "location",
            Self::CostCenter => "cost_center",
            Self::EmploymentType => "employment_type",
            Self::Custom(key) => return Cow::Owned(format!("{CUSTOM_PREFIX}{key}")),
        })
    }

    /// Whether every worker must have this attribute (it cannot be cleared).
    pub fn is_required(&self) -> bool {
        matches!(
            self,
            Self::GivenName | Self::FamilyName | Self::EmploymentType
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

/// The HR attributes of a worker, mirroring the `WorkerAttributes` record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkerAttributes {
    /// Legal given (first) name.
    pub given_name: String,
    /// Legal family (last) name.
    pub family_name: String,
    /// Name the worker prefers to be called.
    pub preferred_name: Option<String>,
    /// Full name for display.
    pub display_name: Option<String>,
    /// Work e-mail address.
    pub work_email: Option<String>,
    /// Personal e-mail address.
    pub personal_email: Option<String>,
    /// Work phone number.
    pub phone: Option<String>,
    /// Job title.
    pub title: Option<String>,
    /// Department name.
    pub department: Option<String>,
    /// Employee id of the worker's manager.
    pub manager_id: Option<EmployeeId>,
    /// Work location.
    pub location: Option<String>,
    /// Cost center code.
    pub cost_center: Option<String>,
    /// Kind of employment.
    pub employment_type: EmploymentType,
    /// Source-specific attributes, addressed as `custom.<key>`. Sorted by key.
    pub custom: BTreeMap<String, String>,
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
            preferred_name: None,
            display_name: None,
            work_email: None,
            personal_email: None,
            phone: None,
            title: None,
            department: None,
            manager_id: None,
            location: None,
            cost_center: None,
            employment_type,
            custom: BTreeMap::new(),
        }
    }

    /// The value of one attribute as text, `None` if unset.
    pub fn get(&self, attribute: &Attribute) -> Option<Cow<'_, str>> {
        fn text(v: &Option<String>) -> Option<Cow<'_, str>> {
            v.as_deref().map(Cow::Borrowed)
        }
        match attribute {
            Attribute::GivenName => Some(Cow::Borrowed(&self.given_name)),
            Attribute::FamilyName => Some(Cow::Borrowed(&self.family_name)),
            Attribute::PreferredName => text(&self.preferred_name),
            Attribute::DisplayName => text(&self.display_name),
            Attribute::WorkEmail => text(&self.work_email),
            Attribute::PersonalEmail => text(&self.personal_email),
            Attribute::Phone => text(&self.phone),
            Attribute::Title => text(&self.title),
            Attribute::Department => text(&self.department),
            Attribute::ManagerId => self.manager_id.as_ref().map(|m| Cow::Borrowed(m.as_str())),
            Attribute::Location => text(&self.location),
            Attribute::CostCenter => text(&self.cost_center),
            Attribute::EmploymentType => Some(Cow::Borrowed(self.employment_type.as_str())),
            Attribute::Custom(key) => self.custom.get(key).map(|v| Cow::Borrowed(v.as_str())),
        }
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
    /// [`DomainError::RequiredAttributeCleared`] when clearing `given_name`,
    /// `family_name` or `employment_type`; [`DomainError::UnknownSymbol`] for
    /// a bad employment type; an identifier error for a bad `manager_id`.
    pub fn apply(&mut self, change: &AttributeChange) -> Result<()> {
        let value = change.value.clone();
        let required = |v: Option<String>, attribute: &'static str| {
            v.ok_or(DomainError::RequiredAttributeCleared { attribute })
        };
        match &change.attribute {
            Attribute::GivenName => self.given_name = required(value, "given_name")?,
            Attribute::FamilyName => self.family_name = required(value, "family_name")?,
            Attribute::EmploymentType => {
                self.employment_type = EmploymentType::parse(&required(value, "employment_type")?)?;
            }
            Attribute::ManagerId => {
                self.manager_id = value.map(EmployeeId::new).transpose()?;
            }
            Attribute::PreferredName => self.preferred_name = value,
            Attribute::DisplayName => self.display_name = value,
            Attribute::WorkEmail => self.work_email = value,
            Attribute::PersonalEmail => self.personal_email = value,
            Attribute::Phone => self.phone = value,
            Attribute::Title => self.title = value,
            Attribute::Department => self.department = value,
            Attribute::Location => self.location = value,
            Attribute::CostCenter => self.cost_center = value,
            Attribute::Custom(key) => match value {
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn alice() -> WorkerAttributes {
        let mut a = WorkerAttributes::new("Alice", "Liddell", EmploymentType::Employee);
        a.title = Some("Engineer".into());
        a.department = Some("R&D".into());
        a.manager_id = Some(EmployeeId::new("E0001").unwrap());
        a.custom.insert("badge".into(), "42".into());
        a
    }

    #[test]
    fn attribute_names_round_trip() {
        for a in Attribute::STANDARD {
            assert_eq!(Attribute::parse(&a.as_str()).unwrap(), a);
        }
        let custom = Attribute::parse("custom.shirt_size").unwrap();
        assert_eq!(custom, Attribute::Custom("shirt_size".into()));
        assert_eq!(custom.as_str(), "custom.shirt_size");
        assert_eq!(custom.to_string(), "custom.shirt_size");
    }

    #[test]
    fn unknown_attribute_names_the_value() {
        let err = Attribute::parse("favourite_colour").unwrap_err();
        assert!(
            matches!(err, DomainError::UnknownAttribute { ref value, .. } if value == "favourite_colour")
        );
        assert!(err.to_string().contains("favourite_colour"));
        assert!(Attribute::parse("custom.").is_err());
        assert!(Attribute::parse("custom. x").is_err());
        assert!(Attribute::parse("Title").is_err());
    }

    #[test]
    fn employment_type_symbols() {
        for t in EmploymentType::ALL {
            assert_eq!(EmploymentType::parse(t.as_str()).unwrap(), t);
        }
        assert!(matches!(
            EmploymentType::parse("employee"),
            Err(DomainError::UnknownSymbol {
                field: "employment_type",
                ..
            })
        ));
    }

    #[test]
    fn apply_sets_and_clears() {
        let mut a = alice();
        a.apply(&AttributeChange::set(Attribute::Title, "Staff Engineer"))
            .unwrap();
        assert_eq!(a.title.as_deref(), Some("Staff Engineer"));
        a.apply(&AttributeChange::clear(Attribute::Department))
            .unwrap();
        assert_eq!(a.department, None);
        a.apply(&AttributeChange::set(
            Attribute::EmploymentType,
            "CONTRACTOR",
        ))
        .unwrap();
        assert_eq!(a.employment_type, EmploymentType::Contractor);
        a.apply(&AttributeChange::set(Attribute::ManagerId, "E0002"))
            .unwrap();
        assert_eq!(a.manager_id.as_ref().map(EmployeeId::as_str), Some("E0002"));
        a.apply(&AttributeChange::clear(Attribute::Custom("badge".into())))
            .unwrap();
        assert!(a.custom.is_empty());
        a.apply(&AttributeChange::set(
            Attribute::Custom("floor".into()),
            "3",
        ))
        .unwrap();
        assert_eq!(a.custom.get("floor").map(String::as_str), Some("3"));
    }

    #[test]
    fn apply_rejects_bad_changes_and_leaves_value_unchanged() {
        let mut a = alice();
        let before = a.clone();
        assert_eq!(
            a.apply(&AttributeChange::clear(Attribute::GivenName)),
            Err(DomainError::RequiredAttributeCleared {
                attribute: "given_name"
            })
        );
        assert!(a
            .apply(&AttributeChange::clear(Attribute::EmploymentType))
            .is_err());
        assert!(a
            .apply(&AttributeChange::set(Attribute::EmploymentType, "BOSS"))
            .is_err());
        assert!(a
            .apply(&AttributeChange::set(Attribute::ManagerId, ""))
            .is_err());
        assert_eq!(a, before);

        let changes = [
            AttributeChange::set(Attribute::Title, "CTO"),
            AttributeChange::clear(Attribute::FamilyName),
        ];
        assert!(a.apply_all(&changes).is_err());
        assert_eq!(a, before, "apply_all is all or nothing");
    }

    #[test]
    fn diff_emits_only_changes_in_canonical_order() {
        let old = alice();
        let mut new = old.clone();
        new.custom.insert("aaa".into(), "1".into());
        new.custom.remove("badge");
        new.title = None;
        new.given_name = "Alicia".into();
        new.employment_type = EmploymentType::Intern;
        let changes = WorkerAttributes::diff(&old, &new);
        assert_eq!(
            changes,
            vec![
                AttributeChange::set(Attribute::GivenName, "Alicia"),
                AttributeChange::clear(Attribute::Title),
                AttributeChange::set(Attribute::EmploymentType, "INTERN"),
                AttributeChange::set(Attribute::Custom("aaa".into()), "1"),
                AttributeChange::clear(Attribute::Custom("badge".into())),
            ]
        );
        assert!(WorkerAttributes::diff(&old, &old).is_empty());
        let mut applied = old.clone();
        applied.apply_all(&changes).unwrap();
        assert_eq!(applied, new);
    }

    #[test]
    fn values_lists_set_attributes_in_order() {
        let names: Vec<String> = alice()
            .values()
            .into_iter()
            .map(|(a, _)| a.to_string())
            .collect();
        assert_eq!(
            names,
            [
                "given_name",
                "family_name",
                "title",
                "department",
                "manager_id",
                "employment_type",
                "custom.badge"
            ]
        );
    }

    fn opt_text() -> impl Strategy<Value = Option<String>> {
        proptest::option::of("[a-zA-Z ]{0,6}")
    }

    prop_compose! {
        fn worker()(
            given in "[A-Z][a-z]{0,5}",
            family in "[A-Z][a-z]{0,5}",
            title in opt_text(),
            department in opt_text(),
            phone in opt_text(),
            manager in proptest::option::of("E[0-9]{1,3}"),
            et in 0usize..3,
            custom in proptest::collection::btree_map("[a-c]{1,2}", "[a-z]{0,2}", 0..4),
        ) -> WorkerAttributes {
            let mut w = WorkerAttributes::new(given, family, EmploymentType::ALL[et]);
            w.title = title;
            w.department = department;
            w.phone = phone;
            w.manager_id = manager.map(|m| EmployeeId::new(m).unwrap());
            w.custom = custom;
            w
        }
    }

    proptest! {
        #[test]
        fn diff_then_apply_reaches_new(old in worker(), new in worker()) {
            let changes = WorkerAttributes::diff(&old, &new);
            let mut applied = old.clone();
            applied.apply_all(&changes).unwrap();
            prop_assert_eq!(&applied, &new);
            prop_assert_eq!(changes.is_empty(), old == new);
            let attrs: Vec<&Attribute> = changes.iter().map(|c| &c.attribute).collect();
            let mut sorted = attrs.clone();
            sorted.sort();
            sorted.dedup();
            prop_assert_eq!(attrs, sorted, "changes are sorted and unique");
        }
    }
}
