//! The explicit mapping between domain types and Avro values, one pair of
//! functions per record of the schemas. Values are built in the schema's
//! field order; decoding takes fields by name from a value already resolved
//! to the current schema, and validates through the domain constructors.

use apache_avro::types::Value;
use hrsync_domain::{
    AppAssignment, Attribute, AttributeChange, AttributeType, AttributeValue, AuditOperation,
    AuditOutcome, DirectoryChange, EmployeeId, EmploymentType, EventId, EventKind, Hire,
    LeaveEnded, LeaveStarted, LifecycleEvent, LifecyclePayload, LifecycleState, Move, PersonId,
    Profile, ProvisioningAudit, Rehire, SourceSystem, Terminate, TimeZone, WorkerAttributes,
};

use crate::error::{DecodeError, EncodeError};
use crate::value::{
    as_string, date, int, invalid, long, opt_string, optional, string, strings, symbol, timestamp,
    Record,
};

fn time_zone(s: String) -> Result<TimeZone, hrsync_domain::DomainError> {
    TimeZone::new(&s)
}

// ---- WorkerAttributes ---------------------------------------------------

/// The index of an employment type symbol given as text (the schema's enum
/// has the symbols in [`EmploymentType::ALL`] order).
pub(crate) fn employment_type_index(text: Option<&str>) -> usize {
    EmploymentType::ALL
        .iter()
        .position(|t| Some(t.as_str()) == text)
        .unwrap_or_default()
}

/// The value of one standard attribute.
fn attribute_to_value(attribute: &Attribute, a: &WorkerAttributes) -> Value {
    let text = a.text(attribute);
    match attribute.value_type() {
        AttributeType::Text => string(text.unwrap_or_default()),
        AttributeType::OptionalText => opt_string(text),
        AttributeType::EmploymentType => {
            symbol(employment_type_index(text), text.unwrap_or_default())
        }
    }
}

/// `WorkerAttributes`: the standard attributes in canonical order (the
/// schema's field order; a test checks it), then `custom`.
pub(crate) fn worker_attributes_to_value(a: &WorkerAttributes) -> Value {
    let standard = Attribute::STANDARD
        .iter()
        .zip(Attribute::STANDARD_NAMES)
        .map(|(attribute, name)| (name.to_owned(), attribute_to_value(attribute, a)));
    let custom = Value::Map(
        a.custom
            .iter()
            .map(|(k, v)| (k.clone(), string(v)))
            .collect(),
    );
    Value::Record(
        standard
            .chain(std::iter::once(("custom".to_owned(), custom)))
            .collect(),
    )
}

pub(crate) fn worker_attributes_from_value(mut r: Record) -> Result<WorkerAttributes, DecodeError> {
    let mut attributes = WorkerAttributes::blank();
    for (attribute, name) in Attribute::STANDARD.iter().zip(Attribute::STANDARD_NAMES) {
        let value = match attribute.value_type() {
            AttributeType::Text => AttributeValue::Text(Some(r.string(name)?)),
            AttributeType::OptionalText => AttributeValue::Text(r.opt_string(name)?),
            AttributeType::EmploymentType => AttributeValue::Text(Some(r.symbol(name)?)),
        };
        attributes
            .set(attribute, value)
            .map_err(invalid(&r.path(name)))?;
    }
    let custom_path = r.path("custom");
    attributes.custom = r
        .map("custom")?
        .into_iter()
        .map(|(k, v)| {
            let path = format!("{custom_path}[{k:?}]");
            Ok((k, as_string(&path, v)?))
        })
        .collect::<Result<_, DecodeError>>()?;
    Ok(attributes)
}

// ---- LifecycleEvent -----------------------------------------------------

fn payload_to_value(p: &LifecyclePayload) -> Value {
    let record = match p {
        LifecyclePayload::Hire(Hire { attributes })
        | LifecyclePayload::Rehire(Rehire { attributes }) => Value::Record(vec![(
            "attributes".into(),
            worker_attributes_to_value(attributes),
        )]),
        LifecyclePayload::Move(Move { changes }) => Value::Record(vec![(
            "changes".into(),
            Value::Array(
                changes
                    .iter()
                    .map(|c| {
                        Value::Record(vec![
                            ("attribute".into(), string(&c.attribute.as_str())),
                            ("value".into(), opt_string(c.value.as_deref())),
                        ])
                    })
                    .collect(),
            ),
        )]),
        LifecyclePayload::Terminate(t) => Value::Record(vec![
            ("immediate".into(), Value::Boolean(t.immediate)),
            (
                "last_day_worked".into(),
                optional(t.last_day_worked.map(date)),
            ),
            ("reason".into(), opt_string(t.reason.as_deref())),
        ]),
        LifecyclePayload::LeaveStarted(l) => Value::Record(vec![
            ("leave_type".into(), opt_string(l.leave_type.as_deref())),
            (
                "expected_return".into(),
                optional(l.expected_return.map(date)),
            ),
        ]),
        LifecyclePayload::LeaveEnded(l) => {
            Value::Record(vec![("reason".into(), opt_string(l.reason.as_deref()))])
        }
    };
    // The union's branches are in EventKind::ALL order (a test checks it).
    let index = EventKind::ALL
        .iter()
        .position(|k| *k == p.kind())
        .unwrap_or_default();
    Value::Union(index as u32, Box::new(record))
}

fn payload_from_value(value: Value) -> Result<LifecyclePayload, DecodeError> {
    let (index, inner) = match value {
        Value::Union(i, inner) => (i, *inner),
        other => {
            return Err(DecodeError::Corrupt(format!(
                "payload: expected a union, found {other:?}"
            )))
        }
    };
    let kind = EventKind::ALL.get(index as usize).copied().ok_or_else(|| {
        DecodeError::Corrupt(format!("payload: union index {index} out of range"))
    })?;
    let path = match kind {
        EventKind::Hire => "payload.Hire",
        EventKind::Move => "payload.Move",
        EventKind::Terminate => "payload.Terminate",
        EventKind::Rehire => "payload.Rehire",
        EventKind::LeaveStarted => "payload.LeaveStarted",
        EventKind::LeaveEnded => "payload.LeaveEnded",
    };
    let mut r = Record::new(inner, path)?;
    Ok(match kind {
        EventKind::Hire => LifecyclePayload::Hire(Hire {
            attributes: worker_attributes_from_value(r.record("attributes")?)?,
        }),
        EventKind::Rehire => LifecyclePayload::Rehire(Rehire {
            attributes: worker_attributes_from_value(r.record("attributes")?)?,
        }),
        EventKind::Move => {
            let changes_path = r.path("changes");
            let changes = r
                .array("changes")?
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    let mut c = Record::new(v, format!("{changes_path}[{i}]"))?;
                    Ok(AttributeChange {
                        attribute: c.parse("attribute", |s| Attribute::parse(&s))?,
                        value: c.opt_string("value")?,
                    })
                })
                .collect::<Result<_, DecodeError>>()?;
            LifecyclePayload::Move(Move { changes })
        }
        EventKind::Terminate => LifecyclePayload::Terminate(Terminate {
            immediate: r.boolean("immediate")?,
            last_day_worked: r.opt_date("last_day_worked")?,
            reason: r.opt_string("reason")?,
        }),
        EventKind::LeaveStarted => LifecyclePayload::LeaveStarted(LeaveStarted {
            leave_type: r.opt_string("leave_type")?,
            expected_return: r.opt_date("expected_return")?,
        }),
        EventKind::LeaveEnded => LifecyclePayload::LeaveEnded(LeaveEnded {
            reason: r.opt_string("reason")?,
        }),
    })
}

pub(crate) fn lifecycle_to_value(e: &LifecycleEvent) -> Value {
    Value::Record(vec![
        ("event_id".into(), string(e.event_id.as_str())),
        ("employee_id".into(), string(e.employee_id.as_str())),
        ("source_system".into(), string(e.source_system.as_str())),
        ("occurred_at".into(), timestamp(e.occurred_at)),
        ("effective_at".into(), timestamp(e.effective_at)),
        ("time_zone".into(), string(e.time_zone.name())),
        ("payload".into(), payload_to_value(&e.payload)),
    ])
}

pub(crate) fn lifecycle_from_value(value: Value) -> Result<LifecycleEvent, DecodeError> {
    let mut r = Record::new(value, "")?;
    let event = LifecycleEvent {
        event_id: r.parse("event_id", EventId::new)?,
        employee_id: r.parse("employee_id", EmployeeId::new)?,
        source_system: r.parse("source_system", SourceSystem::new)?,
        occurred_at: r.timestamp("occurred_at")?,
        effective_at: r.timestamp("effective_at")?,
        time_zone: r.parse("time_zone", time_zone)?,
        payload: payload_from_value(r.take("payload")?)?,
    };
    event
        .payload
        .validate()
        .map_err(invalid("payload.Move.changes"))?;
    Ok(event)
}

// ---- DirectoryChange ----------------------------------------------------

pub(crate) fn lifecycle_state_index(s: LifecycleState) -> usize {
    LifecycleState::ALL
        .iter()
        .position(|x| *x == s)
        .unwrap_or_default()
}

pub(crate) fn directory_change_to_value(c: &DirectoryChange) -> Result<Value, EncodeError> {
    let p = &c.profile;
    Ok(Value::Record(vec![
        ("person_id".into(), string(c.person_id.as_str())),
        ("employee_id".into(), string(c.employee_id.as_str())),
        ("version".into(), long("version", c.version)?),
        (
            "lifecycle_state".into(),
            symbol(
                lifecycle_state_index(c.lifecycle_state),
                c.lifecycle_state.as_str(),
            ),
        ),
        (
            "profile".into(),
            Value::Record(vec![
                (
                    "attributes".into(),
                    worker_attributes_to_value(&p.attributes),
                ),
                ("time_zone".into(), string(p.time_zone.name())),
                ("start_at".into(), optional(p.start_at.map(timestamp))),
                (
                    "terminate_at".into(),
                    optional(p.terminate_at.map(timestamp)),
                ),
            ]),
        ),
        ("groups".into(), strings(&c.groups)),
        (
            "apps".into(),
            Value::Array(
                c.apps
                    .iter()
                    .map(|a| {
                        Value::Record(vec![
                            ("app".into(), string(&a.app)),
                            ("groups".into(), strings(&a.groups)),
                        ])
                    })
                    .collect(),
            ),
        ),
        (
            "caused_by".into(),
            Value::Array(c.caused_by.iter().map(|e| string(e.as_str())).collect()),
        ),
        ("priority".into(), Value::Boolean(c.priority)),
        ("changed_at".into(), timestamp(c.changed_at)),
    ]))
}

pub(crate) fn directory_change_from_value(value: Value) -> Result<DirectoryChange, DecodeError> {
    let mut r = Record::new(value, "")?;
    let state_path = r.path("lifecycle_state");
    let apps_path = r.path("apps");
    let caused_by_path = r.path("caused_by");
    Ok(DirectoryChange {
        person_id: r.parse("person_id", PersonId::new)?,
        employee_id: r.parse("employee_id", EmployeeId::new)?,
        version: r.unsigned_long("version")?,
        lifecycle_state: LifecycleState::parse(&r.symbol("lifecycle_state")?)
            .map_err(invalid(&state_path))?,
        profile: {
            let mut p = r.record("profile")?;
            Profile {
                attributes: worker_attributes_from_value(p.record("attributes")?)?,
                time_zone: p.parse("time_zone", time_zone)?,
                start_at: p.opt_timestamp("start_at")?,
                terminate_at: p.opt_timestamp("terminate_at")?,
            }
        },
        groups: r.strings("groups")?,
        apps: r
            .array("apps")?
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let mut a = Record::new(v, format!("{apps_path}[{i}]"))?;
                Ok(AppAssignment {
                    app: a.string("app")?,
                    groups: a.strings("groups")?,
                })
            })
            .collect::<Result<_, DecodeError>>()?,
        caused_by: r
            .strings("caused_by")?
            .into_iter()
            .enumerate()
            .map(|(i, s)| EventId::new(s).map_err(invalid(&format!("{caused_by_path}[{i}]"))))
            .collect::<Result<_, DecodeError>>()?,
        priority: r.boolean("priority")?,
        changed_at: r.timestamp("changed_at")?,
    })
}

// ---- ProvisioningAudit --------------------------------------------------

pub(crate) fn audit_to_value(a: &ProvisioningAudit) -> Result<Value, EncodeError> {
    let op_index = AuditOperation::ALL
        .iter()
        .position(|x| *x == a.operation)
        .unwrap_or_default();
    let outcome_index = AuditOutcome::ALL
        .iter()
        .position(|x| *x == a.outcome)
        .unwrap_or_default();
    Ok(Value::Record(vec![
        ("audit_id".into(), string(&a.audit_id)),
        ("person_id".into(), string(a.person_id.as_str())),
        ("app".into(), string(&a.app)),
        ("operation".into(), symbol(op_index, a.operation.as_str())),
        ("outcome".into(), symbol(outcome_index, a.outcome.as_str())),
        (
            "http_status".into(),
            optional(a.http_status.map(|s| Value::Int(s.into()))),
        ),
        ("latency_ms".into(), long("latency_ms", a.latency_ms)?),
        ("attempt".into(), int("attempt", a.attempt)?),
        ("version".into(), long("version", a.version)?),
        ("scim_id".into(), opt_string(a.scim_id.as_deref())),
        ("error".into(), opt_string(a.error.as_deref())),
        ("trace_id".into(), opt_string(a.trace_id.as_deref())),
        ("at".into(), timestamp(a.at)),
    ]))
}

pub(crate) fn audit_from_value(value: Value) -> Result<ProvisioningAudit, DecodeError> {
    let mut r = Record::new(value, "")?;
    let status_path = r.path("http_status");
    let attempt_path = r.path("attempt");
    Ok(ProvisioningAudit {
        audit_id: r.string("audit_id")?,
        person_id: r.parse("person_id", PersonId::new)?,
        app: r.string("app")?,
        operation: AuditOperation::parse(&r.symbol("operation")?),
        outcome: AuditOutcome::parse(&r.symbol("outcome")?),
        http_status: match r.take_optional("http_status")? {
            None => None,
            Some(Value::Int(s)) => Some(u16::try_from(s).map_err(|_| DecodeError::Invalid {
                field: status_path,
                reason: format!("{s} is not an HTTP status"),
            })?),
            Some(other) => {
                return Err(DecodeError::Corrupt(format!(
                    "{status_path}: expected an int, found {other:?}"
                )))
            }
        },
        latency_ms: r.unsigned_long("latency_ms")?,
        attempt: {
            let a = r.int("attempt")?;
            u32::try_from(a).map_err(|_| DecodeError::Invalid {
                field: attempt_path,
                reason: format!("{a} is negative"),
            })?
        },
        version: r.unsigned_long("version")?,
        scim_id: r.opt_string("scim_id")?,
        error: r.opt_string("error")?,
        trace_id: r.opt_string("trace_id")?,
        at: r.timestamp("at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Contract;
    use crate::resolve::{resolve, Names, Pair};
    use apache_avro::schema::Schema;
    use apache_avro::{from_avro_datum, to_avro_datum};
    use hrsync_domain::Timestamp;

    fn record_field<'a>(schema: &'a Schema, name: &str) -> &'a Schema {
        let Schema::Record(r) = schema else {
            panic!("record expected")
        };
        &r.fields[r.lookup[name]].schema
    }

    fn symbols(schema: &Schema) -> Vec<String> {
        match schema {
            Schema::Enum(e) => e.symbols.clone(),
            other => panic!("enum expected, got {other:?}"),
        }
    }

    #[test]
    fn payload_union_order_matches_event_kind() {
        let schema = Contract::Lifecycle.schema().unwrap();
        let Schema::Union(u) = record_field(schema, "payload") else {
            panic!("union expected")
        };
        let names: Vec<String> = u
            .variants()
            .iter()
            .map(|v| match v {
                Schema::Record(r) => r.name.name.clone(),
                other => panic!("record expected, got {other:?}"),
            })
            .collect();
        assert_eq!(
            names,
            [
                "Hire",
                "Move",
                "Terminate",
                "Rehire",
                "LeaveStarted",
                "LeaveEnded"
            ]
        );
        assert_eq!(EventKind::ALL.len(), names.len());
    }

    #[test]
    fn enum_symbols_match_the_schemas() {
        let lifecycle = Contract::Lifecycle.schema().unwrap();
        let Schema::Union(u) = record_field(lifecycle, "payload") else {
            panic!("union expected")
        };
        let worker = record_field(&u.variants()[0], "attributes");
        let et: Vec<&str> = EmploymentType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(symbols(record_field(worker, "employment_type")), et);

        let directory = Contract::DirectoryChanges.schema().unwrap();
        let ls: Vec<&str> = LifecycleState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(symbols(record_field(directory, "lifecycle_state")), ls);

        let audit = Contract::Audit.schema().unwrap();
        let ops: Vec<&str> = AuditOperation::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(symbols(record_field(audit, "operation")), ops);
        let outs: Vec<&str> = AuditOutcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(symbols(record_field(audit, "outcome")), outs);
    }

    /// An imagined older lifecycle schema: no `cost_center`, no leave
    /// events, `Rehire` before `Hire`. Data written with it must resolve by
    /// name: a Rehire stays a Rehire although Hire has the same fields.
    const OLD_LIFECYCLE: &str = r#"{"type":"record","name":"LifecycleEvent","namespace":"hrsync.v1","fields":[
        {"name":"event_id","type":"string"},
        {"name":"employee_id","type":"string"},
        {"name":"source_system","type":"string"},
        {"name":"occurred_at","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"effective_at","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"time_zone","type":"string"},
        {"name":"payload","type":[
          {"type":"record","name":"Rehire","fields":[{"name":"attributes","type":
            {"type":"record","name":"WorkerAttributes","fields":[
              {"name":"given_name","type":"string"},
              {"name":"family_name","type":"string"},
              {"name":"preferred_name","type":["null","string"],"default":null},
              {"name":"display_name","type":["null","string"],"default":null},
              {"name":"work_email","type":["null","string"],"default":null},
              {"name":"personal_email","type":["null","string"],"default":null},
              {"name":"phone","type":["null","string"],"default":null},
              {"name":"title","type":["null","string"],"default":null},
              {"name":"department","type":["null","string"],"default":null},
              {"name":"manager_id","type":["null","string"],"default":null},
              {"name":"location","type":["null","string"],"default":null},
              {"name":"employment_type","type":{"type":"enum","name":"EmploymentType","symbols":["EMPLOYEE","CONTRACTOR","INTERN"]}},
              {"name":"custom","type":{"type":"map","values":"string"},"default":{}}]}}]},
          {"type":"record","name":"Hire","fields":[{"name":"attributes","type":"WorkerAttributes"}]},
          {"type":"record","name":"Move","fields":[{"name":"changes","type":{"type":"array","items":
            {"type":"record","name":"AttributeChange","fields":[
              {"name":"attribute","type":"string"},
              {"name":"value","type":["null","string"],"default":null}]}}}]},
          {"type":"record","name":"Terminate","fields":[
            {"name":"immediate","type":"boolean"},
            {"name":"last_day_worked","type":["null",{"type":"int","logicalType":"date"}],"default":null},
            {"name":"reason","type":["null","string"],"default":null}]}]}]}"#;

    #[test]
    fn old_writer_union_resolves_by_name() {
        let old = Schema::parse_str(OLD_LIFECYCLE).unwrap();
        let current = Contract::Lifecycle.schema().unwrap();
        let attrs = |name: &str| {
            Value::Record(vec![
                ("given_name".into(), string(name)),
                ("family_name".into(), string("Hopper")),
                ("preferred_name".into(), opt_string(None)),
                ("display_name".into(), opt_string(None)),
                ("work_email".into(), opt_string(Some("grace@example.com"))),
                ("personal_email".into(), opt_string(None)),
                ("phone".into(), opt_string(None)),
                ("title".into(), opt_string(Some("Admiral"))),
                ("department".into(), opt_string(None)),
                ("manager_id".into(), opt_string(Some("E0"))),
                ("location".into(), opt_string(None)),
                ("employment_type".into(), symbol(1, "CONTRACTOR")),
                ("custom".into(), Value::Map(Default::default())),
            ])
        };
        let event = |branch: u32, payload: Value| {
            Value::Record(vec![
                ("event_id".into(), string("ev-1")),
                ("employee_id".into(), string("E1")),
                ("source_system".into(), string("workday")),
                ("occurred_at".into(), Value::TimestampMillis(1)),
                ("effective_at".into(), Value::TimestampMillis(2)),
                ("time_zone".into(), string("America/New_York")),
                ("payload".into(), Value::Union(branch, Box::new(payload))),
            ])
        };
        let decode = |value: Value| {
            let bytes = to_avro_datum(&old, value).unwrap();
            let written = from_avro_datum(&old, &mut bytes.as_slice(), None).unwrap();
            let (old_names, current_names) = (Names::collect(&old), Names::collect(current));
            let resolved = resolve(
                written,
                Pair {
                    writer: &old,
                    writer_names: &old_names,
                    reader: current,
                    reader_names: &current_names,
                },
            )
            .unwrap();
            lifecycle_from_value(resolved).unwrap()
        };

        let rehire = decode(event(
            0,
            Value::Record(vec![("attributes".into(), attrs("Grace"))]),
        ));
        let LifecyclePayload::Rehire(Rehire { attributes }) = &rehire.payload else {
            panic!("a Rehire must stay a Rehire, got {:?}", rehire.payload)
        };
        assert_eq!(attributes.given_name, "Grace");
        assert_eq!(attributes.cost_center, None, "new field takes its default");
        assert_eq!(attributes.employment_type, EmploymentType::Contractor);
        assert_eq!(rehire.effective_at, Timestamp::from_millis(2).unwrap());
        assert_eq!(rehire.time_zone.name(), "America/New_York");

        let hire = decode(event(
            1,
            Value::Record(vec![("attributes".into(), attrs("Ada"))]),
        ));
        assert!(matches!(hire.payload, LifecyclePayload::Hire(_)));

        let terminate = decode(event(
            3,
            Value::Record(vec![
                ("immediate".into(), Value::Boolean(true)),
                (
                    "last_day_worked".into(),
                    optional(Some(Value::Date(19_000))),
                ),
                ("reason".into(), opt_string(None)),
            ]),
        ));
        let LifecyclePayload::Terminate(t) = terminate.payload else {
            panic!("terminate expected")
        };
        assert!(t.immediate);
        assert_eq!(
            t.last_day_worked.map(|d| d.to_string()).as_deref(),
            Some("2022-01-08")
        );
    }
}
