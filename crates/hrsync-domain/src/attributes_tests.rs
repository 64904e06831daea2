//! Tests of `attributes.rs`.

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
fn the_generated_tables_follow_the_list() {
    assert_eq!(Attribute::STANDARD.len(), StandardAttribute::ALL.len());
    for ((attribute, name), standard) in Attribute::STANDARD
        .iter()
        .zip(Attribute::STANDARD_NAMES)
        .zip(StandardAttribute::ALL)
    {
        assert_eq!(attribute.as_str(), name);
        assert_eq!(attribute.standard_name(), Some(name));
        assert_eq!(standard.name(), name);
        assert_eq!(&Attribute::from(standard), attribute);
        assert!(Attribute::EXPECTED.contains(name));
    }
    let required: Vec<&str> = Attribute::STANDARD
        .iter()
        .filter(|a| a.is_required())
        .map(|a| a.standard_name().unwrap())
        .collect();
    assert_eq!(required, ["given_name", "family_name", "employment_type"]);
    assert!(!Attribute::Custom("x".into()).is_required());
}

#[test]
fn set_then_text_reads_every_attribute_back() {
    let mut a = WorkerAttributes::blank();
    for (i, attribute) in Attribute::STANDARD.iter().enumerate() {
        let value = match attribute.value_type() {
            AttributeType::EmploymentType => "INTERN".to_owned(),
            AttributeType::Text | AttributeType::OptionalText => format!("E{i}"),
        };
        a.set(attribute, AttributeValue::Text(Some(value.clone())))
            .unwrap();
        assert_eq!(a.text(attribute), Some(value.as_str()), "{attribute}");
    }
    assert_eq!(a.values().len(), Attribute::STANDARD.len());
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
