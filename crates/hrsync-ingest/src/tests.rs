//! Parser tests: every rejection names file, line and column; nothing panics.

use hrsync_domain::{Attribute, StandardAttribute};
use proptest::prelude::*;

use crate::snapshot::{parse, Snapshot, SnapshotError, Worker};
use crate::source::{Field, Format, SourceConfig, WorkerStatus};

const HEADER: &str = "employee_id,given_name,family_name,work_email,title,department,manager_id,status,hire_date,termination_date,time_zone,badge";

fn source() -> SourceConfig {
    SourceConfig::new("workday")
}

fn csv(rows: &[&str]) -> Result<Snapshot, SnapshotError> {
    let text = std::iter::once(HEADER)
        .chain(rows.iter().copied())
        .collect::<Vec<_>>()
        .join("\n");
    parse(&source(), "day0.csv", text.as_bytes(), Format::Csv)
}

/// The worker's value of the attribute named `name`.
fn value_of<'w>(worker: &'w Worker, name: &str) -> Option<&'w str> {
    worker
        .attributes
        .text(&Attribute::parse(name).expect("attribute name"))
}

fn messages(err: &SnapshotError) -> Vec<String> {
    err.errors.iter().map(ToString::to_string).collect()
}

#[test]
fn valid_csv_parses_with_custom_columns_and_defaults() {
    let snap = csv(&[
        "E1,Lucy,Lee,lucy@acme.test,Agent,Customer Support,E2,Active,2026-01-05,,Europe/Paris,B-1",
        "E2,Max,Moe,max@acme.test,Lead,Customer Support,,active,2020-03-01,,America/New_York,",
    ])
    .expect("valid");
    let lucy = &snap.workers["E1"];
    assert_eq!(lucy.status, WorkerStatus::Active);
    assert_eq!(value_of(lucy, "department"), Some("Customer Support"));
    assert_eq!(value_of(lucy, "manager_id"), Some("E2"));
    assert_eq!(value_of(lucy, "custom.badge"), Some("B-1"));
    assert_eq!(value_of(lucy, "employment_type"), Some("EMPLOYEE"));
    assert_eq!(value_of(&snap.workers["E2"], "custom.badge"), None);
}

#[test]
fn column_mapping_and_value_maps_apply() {
    let mut source = SourceConfig::new("bamboo");
    source
        .columns
        .insert(Field::EmployeeId, "Employee #".into());
    source
        .columns
        .insert(Field::Status, "Employment Status".into());
    source.columns.insert(
        Field::Attribute(StandardAttribute::EmploymentType),
        "Worker Type".into(),
    );
    source
        .status_values
        .insert("Working".into(), WorkerStatus::Active);
    source
        .employment_type_values
        .insert("Contingent".into(), "contractor".into());
    source.default_time_zone = Some("UTC".into());
    source.validate().expect("valid source");
    let text = "Employee #,given_name,family_name,Employment Status,Worker Type,hire_date\n7,Ann,Ames,working,Contingent,2025-02-02\n";
    let snap = parse(&source, "b.csv", text.as_bytes(), Format::Csv).expect("valid");
    let ann = &snap.workers["7"];
    assert_eq!(ann.status, WorkerStatus::Active);
    assert_eq!(value_of(ann, "employment_type"), Some("CONTRACTOR"));
    assert_eq!(ann.time_zone, "UTC");
}

#[test]
fn every_problem_is_reported_with_line_and_column() {
    let err = csv(&[
        "E1,Lucy,Lee,lucy@acme.test,Agent,CS,,Active,2026-13-05,,Europe/Paris,",
        "E2,Max,Moe,not-an-email,Lead,CS,E9,Retired,2020-03-01,,Mars/Base,",
        "E1,Dup,Dup,dup@acme.test,Agent,CS,,Active,2026-01-05,,UTC,",
        ",NoId,X,x@acme.test,Agent,CS,,Active,2026-01-05,,UTC,",
    ])
    .expect_err("invalid");
    let all = messages(&err).join("\n");
    for expected in [
        "day0.csv:2: hire_date: \"2026-13-05\" is not a date",
        "day0.csv:3: work_email: \"not-an-email\" is not an email address",
        "day0.csv:3: status: unknown status \"Retired\"",
        "day0.csv:3: time_zone: \"Mars/Base\" is not an IANA time zone",
        "day0.csv:5: employee_id: required value is missing",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    // E1 on line 2 was itself invalid, so line 4 is not a duplicate of it;
    // a valid duplicate is caught:
    let err = csv(&[
        "E1,Lucy,Lee,lucy@acme.test,Agent,CS,,Active,2026-01-05,,UTC,",
        "E1,Dup,Dup,dup@acme.test,Agent,CS,,Active,2026-01-05,,UTC,",
    ])
    .expect_err("duplicate");
    assert!(
        messages(&err)[0]
            .contains("day0.csv:3: employee_id: duplicate employee id \"E1\" (first on line 2)"),
        "{err}"
    );
}

#[test]
fn unknown_manager_and_self_manager_are_rejected() {
    let err = csv(&[
        "E1,Lucy,Lee,lucy@acme.test,Agent,CS,E404,Active,2026-01-05,,UTC,",
        "E2,Max,Moe,max@acme.test,Lead,CS,E2,Active,2020-03-01,,UTC,",
    ])
    .expect_err("invalid");
    let all = messages(&err).join("\n");
    assert!(
        all.contains("day0.csv:2: manager_id: manager \"E404\" is not a worker of this snapshot"),
        "{all}"
    );
    assert!(
        all.contains("day0.csv:3: manager_id: a worker cannot be their own manager"),
        "{all}"
    );
}

#[test]
fn missing_required_columns_are_named() {
    let text = "employee_id,given_name,status\nE1,Lucy,Active\n";
    let err = parse(&source(), "x.csv", text.as_bytes(), Format::Csv).expect_err("invalid");
    let all = messages(&err).join("\n");
    assert!(
        all.contains("x.csv:1: family_name: required column is missing"),
        "{all}"
    );
    assert!(
        all.contains("x.csv:1: hire_date: required column is missing"),
        "{all}"
    );
}

#[test]
fn ragged_rows_and_bad_encoding_are_reported() {
    let err = csv(&["E1,Lucy"]).expect_err("ragged");
    assert!(
        messages(&err)[0].starts_with("day0.csv:2: row has 2 columns"),
        "{err}"
    );

    let mut bytes =
        format!("{HEADER}\nE1,Lucy,Lee,lucy@acme.test,Agent,CS,,Active,2026-01-05,,UTC,\n")
            .into_bytes();
    bytes.extend_from_slice(b"E2,Ren\xE9,X,x@acme.test,Agent,CS,,Active,2026-01-05,,UTC,\n");
    let err = parse(&source(), "latin1.csv", &bytes, Format::Csv).expect_err("encoding");
    assert!(
        messages(&err)[0].starts_with("latin1.csv:3: not valid UTF-8"),
        "{err}"
    );
}

#[test]
fn jsonl_parses_and_reports_bad_lines() {
    let text = r#"{"employee_id": 1001, "given_name": "Lucy", "family_name": "Lee", "status": "active", "hire_date": "2026-01-05", "time_zone": "UTC", "extra": "x"}

{"employee_id": "1002", "given_name": "Max"
["not", "an", "object"]
{"employee_id": "1003", "given_name": "A", "family_name": "B", "status": "active", "hire_date": "2026-01-05", "time_zone": "UTC", "nested": {"a": 1}}
"#;
    let err = parse(&source(), "w.jsonl", text.as_bytes(), Format::Jsonl).expect_err("invalid");
    let all = messages(&err).join("\n");
    assert!(all.contains("w.jsonl:3: invalid JSON"), "{all}");
    assert!(all.contains("w.jsonl:4: expected a JSON object"), "{all}");
    assert!(
        all.contains("w.jsonl:5: nested: expected a string"),
        "{all}"
    );

    let ok = r#"{"employee_id": 1001, "given_name": "Lucy", "family_name": "Lee", "status": "active", "hire_date": "2026-01-05", "time_zone": "UTC", "extra": "x", "phone": null}"#;
    let snap = parse(&source(), "w.jsonl", ok.as_bytes(), Format::Jsonl).expect("valid");
    assert_eq!(value_of(&snap.workers["1001"], "custom.extra"), Some("x"));
    assert_eq!(value_of(&snap.workers["1001"], "phone"), None);
}

#[test]
fn source_validation_names_keys() {
    let mut s = SourceConfig::new("w");
    s.columns.insert(
        Field::Attribute(StandardAttribute::Title),
        "employee_id".into(),
    );
    assert!(s
        .validate()
        .expect_err("clash")
        .to_string()
        .contains("mapped to both"));
    let mut s = SourceConfig::new("w");
    s.max_termination_share = 2.0;
    assert!(s
        .validate()
        .expect_err("share")
        .to_string()
        .contains("max_termination_share"));
}

/// Every attribute of the domain's list is a field, a column and a
/// `columns` key (the list is `standard_attributes!` in `hrsync-domain`).
#[test]
fn every_standard_attribute_is_a_field() {
    for attribute in StandardAttribute::ALL {
        let field = Field::Attribute(attribute);
        assert!(
            Field::ALL.contains(&field),
            "{} is in Field::ALL",
            attribute.name()
        );
        assert!(field.is_attribute());
        assert_eq!(Field::parse(attribute.name()), Some(field));
        let key = format!("{{{:?}: \"Column\"}}", attribute.name());
        let columns: std::collections::BTreeMap<Field, String> =
            serde_json::from_str(&key).expect("a columns key");
        assert_eq!(columns.keys().copied().collect::<Vec<_>>(), [field]);
        assert_eq!(
            serde_json::to_string(&columns).unwrap(),
            key.replace(": ", ":")
        );
    }
    let unknown = serde_json::from_str::<std::collections::BTreeMap<Field, String>>(
        r#"{"favourite_colour": "x"}"#,
    )
    .expect_err("unknown field");
    assert!(unknown
        .to_string()
        .contains("unknown variant `favourite_colour`"));
    assert!(unknown.to_string().contains("`cost_center`"));
}

/// A snapshot with a column for every attribute of the list carries each
/// one into the worker.
#[test]
fn a_snapshot_carries_every_standard_attribute() {
    let value = |attribute: StandardAttribute| match attribute {
        StandardAttribute::ManagerId => "E2".to_owned(),
        StandardAttribute::EmploymentType => "contractor".to_owned(),
        StandardAttribute::WorkEmail | StandardAttribute::PersonalEmail => {
            format!("{}@example.com", attribute.name())
        }
        other => format!("{} value", other.name()),
    };
    let names: Vec<&str> = StandardAttribute::ALL.iter().map(|a| a.name()).collect();
    let values: Vec<String> = StandardAttribute::ALL.into_iter().map(value).collect();
    let manager: Vec<String> = StandardAttribute::ALL
        .into_iter()
        .map(|a| match a {
            StandardAttribute::ManagerId => String::new(),
            other => value(other),
        })
        .collect();
    let text = format!(
        "employee_id,status,hire_date,time_zone,{}\nE1,active,2026-01-05,UTC,{}\nE2,active,2026-01-05,UTC,{}\n",
        names.join(","),
        values.join(","),
        manager.join(",")
    );
    let snap = parse(&source(), "all.csv", text.as_bytes(), Format::Csv).expect("valid");
    let worker = &snap.workers["E1"];
    for attribute in StandardAttribute::ALL {
        let expected = match attribute {
            StandardAttribute::EmploymentType => "CONTRACTOR".to_owned(),
            _ => value(attribute),
        };
        assert_eq!(
            worker.attributes.text(&attribute.into()),
            Some(expected.as_str()),
            "{}",
            attribute.name()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// No input makes the parsers panic; they either parse or report.
    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&source(), "fuzz.csv", &bytes, Format::Csv);
        let _ = parse(&source(), "fuzz.jsonl", &bytes, Format::Jsonl);
    }

    /// Structured-ish input: header plus arbitrary cell text.
    #[test]
    fn csv_cells_never_panic(cells in proptest::collection::vec("[ -~\u{e9}\u{2603},\"\n]{0,12}", 12)) {
        let row = cells.join(",");
        let text = format!("{HEADER}\n{row}\n");
        match parse(&source(), "fuzz.csv", text.as_bytes(), Format::Csv) {
            Ok(snapshot) => prop_assert!(snapshot.workers.len() <= 1),
            Err(err) => prop_assert!(!err.errors.is_empty()),
        }
    }
}

/// A value the event model rejects is reported at its column, like any other
/// problem, and the worker is not imported.
#[test]
fn values_the_event_model_rejects_are_named_by_column() {
    let row = r#"{"employee_id": "E1", "given_name": "Lucy", "family_name": "Lee", "status": "active", "hire_date": "2026-01-05", "time_zone": "UTC", "manager_id": "E\u0007", "bad\tkey": "x"}"#;
    let err = parse(&source(), "w.jsonl", row.as_bytes(), Format::Jsonl).expect_err("invalid");
    let all = messages(&err).join("\n");
    assert!(all.contains("w.jsonl:1: manager_id: "), "{all}");
    assert!(all.contains("w.jsonl:1: bad\tkey: "), "{all}");
    assert!(all.contains("control character"), "{all}");
}

/// The stored baseline keeps a worker's set attributes only, by name, and
/// reads back the same worker.
#[test]
fn a_worker_is_stored_compactly_and_read_back_the_same() {
    let snap = csv(&[
        "E1,Lucy,Lee,lucy@acme.test,Agent,Customer Support,E2,Active,2026-01-05,,Europe/Paris,B-1",
        "E2,Max,Moe,max@acme.test,Lead,Customer Support,,active,2020-03-01,,America/New_York,",
    ])
    .expect("valid");
    let lucy = &snap.workers["E1"];
    let stored = serde_json::to_value(lucy).expect("serializes");
    assert_eq!(
        stored["attributes"],
        serde_json::json!({
            "given_name": "Lucy", "family_name": "Lee", "work_email": "lucy@acme.test",
            "title": "Agent", "department": "Customer Support", "manager_id": "E2",
            "employment_type": "EMPLOYEE", "custom.badge": "B-1",
        })
    );
    let back: Worker = serde_json::from_value(stored).expect("reads back");
    assert_eq!(&back, lucy);
    let mut bad = serde_json::to_value(lucy).expect("serializes");
    bad["attributes"]["favourite_colour"] = "blue".into();
    let err = serde_json::from_value::<Worker>(bad).expect_err("unknown attribute");
    assert!(err.to_string().contains("favourite_colour"), "{err}");
}
