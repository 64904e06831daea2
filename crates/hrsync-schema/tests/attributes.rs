//! The standard attributes are one list, `standard_attributes!` in
//! `hrsync-domain/src/attributes.rs`; the codec derives from it. These tests
//! hold the two things that cannot derive from it to it: the Avro schemas'
//! `WorkerAttributes` record, and the codec's output for every attribute.
//! Adding an attribute: `docs/attributes.md`.

use std::collections::BTreeMap;

use apache_avro::Schema;
use hrsync_domain::{
    Attribute, AttributeChange, AttributeType, AttributeValue, DirectoryChange, EmployeeId,
    EmploymentType, Hire, LifecycleEvent, LifecyclePayload, LifecycleState, Move, PersonId,
    Profile, SourceSystem, TimeZone, Timestamp, WorkerAttributes,
};
use hrsync_schema::{
    decode_directory_change, decode_lifecycle_direct, decode_lifecycle_generic,
    encode_directory_change, encode_directory_change_generic, encode_lifecycle, Contract,
};

/// The fields of the `WorkerAttributes` record in `contract`'s current schema.
fn worker_attributes_fields(contract: Contract) -> Vec<(String, Schema)> {
    fn find(schema: &Schema) -> Option<&apache_avro::schema::RecordSchema> {
        match schema {
            Schema::Record(r) if r.name.name == "WorkerAttributes" => Some(r),
            Schema::Record(r) => r.fields.iter().find_map(|f| find(&f.schema)),
            Schema::Union(u) => u.variants().iter().find_map(find),
            Schema::Array(a) => find(&a.items),
            _ => None,
        }
    }
    let record = find(contract.schema().unwrap())
        .unwrap_or_else(|| panic!("{contract}: no WorkerAttributes record"));
    record
        .fields
        .iter()
        .map(|f| (f.name.clone(), f.schema.clone()))
        .collect()
}

/// Whether `schema` is the Avro type of a value of type `t`.
fn is_written_as(t: AttributeType, schema: &Schema) -> bool {
    match (t, schema) {
        (AttributeType::Text, Schema::String) => true,
        (AttributeType::OptionalText, Schema::Union(u)) => {
            matches!(u.variants(), [Schema::Null, Schema::String])
        }
        (AttributeType::EmploymentType, Schema::Enum(e)) => {
            let symbols: Vec<&str> = EmploymentType::ALL.iter().map(|t| t.as_str()).collect();
            e.name.name == "EmploymentType" && e.symbols == symbols
        }
        _ => false,
    }
}

#[test]
fn the_schemas_worker_attributes_are_the_domain_list() {
    for contract in [Contract::Lifecycle, Contract::DirectoryChanges] {
        let fields = worker_attributes_fields(contract);
        let (custom, standard) = fields.split_last().expect("fields");
        assert_eq!(custom.0, "custom", "{contract}: `custom` must come last");
        let schema: Vec<&str> = standard.iter().map(|(n, _)| n.as_str()).collect();
        for name in Attribute::STANDARD_NAMES {
            assert!(
                schema.contains(&name),
                "{contract}: the domain's attribute {name} is missing from the schema's \
                 WorkerAttributes (add it, with a history file: docs/attributes.md)"
            );
        }
        for name in &schema {
            assert!(
                Attribute::STANDARD_NAMES.contains(name),
                "{contract}: the schema's WorkerAttributes field {name} is not in the domain's \
                 list (standard_attributes! in hrsync-domain/src/attributes.rs)"
            );
        }
        assert_eq!(
            schema,
            Attribute::STANDARD_NAMES,
            "{contract}: the schema's WorkerAttributes fields are not in the domain's \
             canonical order"
        );
        for (attribute, (name, avro)) in Attribute::STANDARD.iter().zip(standard) {
            let t = attribute.value_type();
            assert!(
                is_written_as(t, avro),
                "{contract}: WorkerAttributes.{name} is {avro:?} in the schema, \
                 the domain says {t:?}"
            );
        }
    }
}

/// A value of `attribute` that differs from every other attribute's.
fn sample(attribute: &Attribute, i: usize) -> AttributeValue {
    match attribute.value_type() {
        AttributeType::EmploymentType => AttributeValue::EmploymentType(EmploymentType::Intern),
        AttributeType::Text | AttributeType::OptionalText => {
            AttributeValue::Text(Some(format!("E{i}-{attribute}")))
        }
    }
}

/// The minimal worker, with `attribute` set to its sample.
fn with(attribute: &Attribute, i: usize) -> WorkerAttributes {
    let mut a = WorkerAttributes::new("Ada", "Lovelace", EmploymentType::Employee);
    a.set(attribute, sample(attribute, i)).unwrap();
    a
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms).unwrap()
}

fn event(payload: LifecyclePayload) -> LifecycleEvent {
    LifecycleEvent::new(
        SourceSystem::new("workday").unwrap(),
        EmployeeId::new("E1").unwrap(),
        ts(1_700_000_000_000),
        ts(1_700_000_000_000),
        TimeZone::new("UTC").unwrap(),
        payload,
    )
    .unwrap()
}

fn change(attributes: WorkerAttributes) -> DirectoryChange {
    DirectoryChange {
        person_id: PersonId::new("p-1").unwrap(),
        employee_id: EmployeeId::new("E1").unwrap(),
        version: 1,
        lifecycle_state: LifecycleState::Active,
        profile: Profile {
            attributes,
            time_zone: TimeZone::new("UTC").unwrap(),
            start_at: None,
            terminate_at: None,
        },
        groups: vec![],
        apps: vec![],
        caused_by: vec![],
        priority: false,
        changed_at: ts(1_700_000_000_000),
    }
}

#[test]
fn every_attribute_in_the_list_round_trips_through_both_codecs() {
    for (i, attribute) in Attribute::STANDARD.iter().enumerate() {
        let attributes = with(attribute, i);
        let value = attributes.text(attribute).map(str::to_owned);
        assert_eq!(
            sample(attribute, i),
            match attribute.value_type() {
                AttributeType::EmploymentType => AttributeValue::EmploymentType(
                    EmploymentType::parse(value.as_deref().unwrap()).unwrap()
                ),
                _ => AttributeValue::Text(value.clone()),
            },
            "{attribute}: set then read back"
        );

        // hr.lifecycle.v1: a hire carrying it, a move changing it.
        let hire = event(LifecyclePayload::Hire(Hire {
            attributes: attributes.clone(),
        }));
        let moved = event(LifecyclePayload::Move(Move {
            changes: vec![AttributeChange {
                attribute: attribute.clone(),
                value,
            }],
        }));
        for e in [hire, moved] {
            let bytes = encode_lifecycle(&e).unwrap();
            assert_eq!(
                decode_lifecycle_generic(&bytes).unwrap(),
                e,
                "{attribute}: generic reader"
            );
            assert_eq!(
                decode_lifecycle_direct(&bytes).as_ref(),
                Some(&e),
                "{attribute}: direct reader"
            );
        }

        // directory.changes.v1: the direct writer writes the generic bytes.
        let c = change(attributes);
        let direct = encode_directory_change(&c).unwrap();
        assert_eq!(
            direct,
            encode_directory_change_generic(&c).unwrap(),
            "{attribute}: direct writer"
        );
        assert_eq!(decode_directory_change(&direct).unwrap(), c, "{attribute}");
    }
}

#[test]
fn a_worker_with_every_attribute_set_round_trips() {
    let mut a = WorkerAttributes::blank();
    for (i, attribute) in Attribute::STANDARD.iter().enumerate() {
        a.set(attribute, sample(attribute, i)).unwrap();
    }
    a.custom = BTreeMap::from([("badge".to_owned(), "42".to_owned())]);
    for attribute in &Attribute::STANDARD {
        assert!(a.text(attribute).is_some(), "{attribute} is set");
    }
    let e = event(LifecyclePayload::Hire(Hire {
        attributes: a.clone(),
    }));
    let bytes = encode_lifecycle(&e).unwrap();
    assert_eq!(decode_lifecycle_direct(&bytes).as_ref(), Some(&e));
    assert_eq!(decode_lifecycle_generic(&bytes).unwrap(), e);
    let c = change(a);
    let direct = encode_directory_change(&c).unwrap();
    assert_eq!(direct, encode_directory_change_generic(&c).unwrap());
    assert_eq!(decode_directory_change(&direct).unwrap(), c);
}
