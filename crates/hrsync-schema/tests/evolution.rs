//! Schema evolution: the current schema of every contract reads data written
//! with every released version in `schemas/history/`.

use apache_avro::schema::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::to_avro_datum;
use apache_avro::types::Value;
use hrsync_schema::{
    decode_audit, decode_directory_change, decode_lifecycle, fingerprint_of_json, framing,
    parsing_canonical_form, schemas, Contract, DecodeError,
};
use serde_json::Value as Json;

#[test]
fn every_schema_file_parses_and_names_its_record() {
    assert_eq!(schemas().len(), Contract::ALL.len());
    for file in schemas() {
        let current = Schema::parse_str(file.current).unwrap();
        let Schema::Record(r) = &current else {
            panic!("{} is not a record", file.name)
        };
        assert_eq!(r.name.fullname(None), file.contract.record_name());
        assert_eq!(file.name, format!("{}.avsc", file.contract.topic()));
        assert!(!file.history.is_empty(), "{} has no history", file.name);
        for (i, h) in file.history.iter().enumerate() {
            assert_eq!(h.version as usize, i + 1, "history is numbered 1, 2, ...");
            Schema::parse_str(h.text).unwrap_or_else(|e| panic!("{}: {e}", h.path));
            parsing_canonical_form(h.text).unwrap();
        }
    }
}

#[test]
fn the_newest_history_file_is_the_current_schema() {
    // A schema change must be released by adding it to the history.
    for file in schemas() {
        let newest = file.history.last().unwrap();
        assert_eq!(
            fingerprint_of_json(newest.text).unwrap(),
            fingerprint_of_json(file.current).unwrap(),
            "{} changed; copy it to schemas/{}/ as the next version",
            file.name,
            newest.path.rsplit_once('/').unwrap().0
        );
    }
}

/// Every field and every named type has a doc; optional fields default to
/// null; timestamps and dates use the agreed logical types.
#[test]
fn schema_conventions_hold() {
    fn walk(json: &Json, where_: &str) {
        match json {
            Json::Object(map) => {
                if matches!(
                    map.get("type").and_then(Json::as_str),
                    Some("record" | "enum")
                ) {
                    assert!(map.contains_key("doc"), "{where_}: type without doc");
                    assert_eq!(
                        map.get("namespace").and_then(Json::as_str),
                        Some("hrsync.v1"),
                        "{where_}: named types carry the namespace"
                    );
                }
                if let Some(Json::Array(fields)) = map.get("fields") {
                    for f in fields {
                        let name = f["name"].as_str().unwrap_or_default();
                        let here = format!("{where_}.{name}");
                        assert!(f.get("doc").is_some(), "{here}: field without doc");
                        if let Json::Array(branches) = &f["type"] {
                            if branches.first() == Some(&Json::String("null".into())) {
                                assert_eq!(f.get("default"), Some(&Json::Null), "{here}");
                            }
                        }
                        walk(&f["type"], &here);
                    }
                }
                for key in ["items", "values"] {
                    if let Some(inner) = map.get(key) {
                        walk(inner, where_);
                    }
                }
            }
            Json::Array(branches) => branches.iter().for_each(|b| walk(b, where_)),
            _ => {}
        }
    }
    for file in schemas() {
        walk(&serde_json::from_str(file.current).unwrap(), file.name);
    }
}

fn find_named<'a>(json: &'a Json, name: &str) -> Option<&'a Json> {
    match json {
        Json::Object(map) => {
            if map.get("name").and_then(Json::as_str) == Some(name) && map.contains_key("fields") {
                return Some(json);
            }
            map.values().find_map(|v| find_named(v, name))
        }
        Json::Array(items) => items.iter().find_map(|v| find_named(v, name)),
        _ => None,
    }
}

#[test]
fn worker_attributes_is_identical_in_both_contracts() {
    let lifecycle: Json = serde_json::from_str(Contract::Lifecycle.schema_file().current).unwrap();
    let directory: Json =
        serde_json::from_str(Contract::DirectoryChanges.schema_file().current).unwrap();
    let a = find_named(&lifecycle, "WorkerAttributes").unwrap();
    let b = find_named(&directory, "WorkerAttributes").unwrap();
    assert_eq!(a, b);
}

#[test]
fn current_schemas_can_read_every_history_version() {
    for file in schemas() {
        let reader = Schema::parse_str(file.current).unwrap();
        for h in file.history {
            let writer = Schema::parse_str(h.text).unwrap();
            if let Err(e) = SchemaCompatibility::can_read(&writer, &reader) {
                panic!(
                    "{} cannot read data written with {}: {e}",
                    file.name, h.path
                );
            }
        }
    }
}

/// A sample datum for any schema: the first enum symbol, union branch
/// `choice % n`, one item per array and map. Strings that the domain
/// validates get acceptable values by field name.
fn sample(schema: &Schema, names: &Names, field: &str, choice: usize) -> Value {
    match schema {
        Schema::Null => Value::Null,
        Schema::Boolean => Value::Boolean(true),
        Schema::Int => Value::Int(200),
        Schema::Long => Value::Long(7),
        Schema::Float => Value::Float(1.5),
        Schema::Double => Value::Double(2.5),
        Schema::Bytes => Value::Bytes(vec![1, 2]),
        Schema::Date => Value::Date(19_000),
        Schema::TimestampMillis => Value::TimestampMillis(1_700_000_000_123),
        Schema::String => Value::String(
            match field {
                "time_zone" => "Europe/Paris",
                "attribute" => "title",
                _ => "sample-value",
            }
            .into(),
        ),
        Schema::Enum(e) => Value::Enum(0, e.symbols[0].clone()),
        Schema::Array(a) => Value::Array(vec![sample(&a.items, names, field, choice)]),
        Schema::Map(m) => Value::Map(
            [("k".to_owned(), sample(&m.types, names, field, choice))]
                .into_iter()
                .collect(),
        ),
        Schema::Union(u) => {
            let i = if u.variants().len() == 2 && u.is_nullable() {
                1 // set optional fields, so their data is carried over
            } else {
                choice % u.variants().len()
            };
            Value::Union(
                i as u32,
                Box::new(sample(&u.variants()[i], names, field, choice)),
            )
        }
        Schema::Record(r) => Value::Record(
            r.fields
                .iter()
                .map(|f| (f.name.clone(), sample(&f.schema, names, &f.name, choice)))
                .collect(),
        ),
        Schema::Ref { name } => sample(&names.0[&name.fullname(None)], names, field, choice),
        other => panic!("sample: unsupported schema {other:?}"),
    }
}

#[derive(Default)]
struct Names(std::collections::HashMap<String, Schema>);

impl Names {
    fn collect(&mut self, s: &Schema) {
        match s {
            Schema::Record(r) => {
                self.0.insert(r.name.fullname(None), s.clone());
                r.fields.iter().for_each(|f| self.collect(&f.schema));
            }
            Schema::Enum(e) => {
                self.0.insert(e.name.fullname(None), s.clone());
            }
            Schema::Array(a) => self.collect(&a.items),
            Schema::Map(m) => self.collect(&m.types),
            Schema::Union(u) => u.variants().iter().for_each(|v| self.collect(v)),
            _ => {}
        }
    }
}

fn decode(contract: Contract, message: &[u8]) -> Result<String, DecodeError> {
    Ok(match contract {
        Contract::Lifecycle => format!("{:?}", decode_lifecycle(message)?),
        Contract::DirectoryChanges => format!("{:?}", decode_directory_change(message)?),
        Contract::Audit => format!("{:?}", decode_audit(message)?),
    })
}

#[test]
fn data_written_with_every_history_version_decodes() {
    for file in schemas() {
        for h in file.history {
            let writer = Schema::parse_str(h.text).unwrap();
            let mut names = Names::default();
            names.collect(&writer);
            // One datum per payload union branch (6 for the lifecycle).
            for choice in 0..6 {
                let datum = to_avro_datum(&writer, sample(&writer, &names, "", choice))
                    .unwrap_or_else(|e| panic!("{}: {e}", h.path));
                let mut message = Vec::new();
                framing::write_header(fingerprint_of_json(h.text).unwrap(), &mut message);
                message.extend_from_slice(&datum);
                let decoded = decode(file.contract, &message)
                    .unwrap_or_else(|e| panic!("{} choice {choice}: {e}", h.path));
                assert!(decoded.contains("sample-value"), "{decoded}");
            }
        }
    }
}

/// The single-object header fingerprints of the released versions, as
/// computed by Python's fastavro 1.x
/// (`fingerprint(to_parsing_canonical_form(parse_schema(s)), "CRC-64-AVRO")`),
/// whose parsing canonical form was byte-identical to ours. Producers in
/// other languages write these bytes; `apache-avro`'s own
/// `Schema::fingerprint` differs for schemas with logical types (see
/// `src/canonical.rs`). History files never change, so neither do these.
#[test]
fn released_fingerprints_match_other_implementations() {
    let expected = [
        ("history/hr.lifecycle.v1/0001.avsc", "fdcf2b6d13242ab3"),
        ("history/directory.changes.v1/0001.avsc", "e07c053183088b01"),
        (
            "history/provisioning.audit.v1/0001.avsc",
            "bfd7976b01bc24ee",
        ),
        (
            "history/provisioning.audit.v1/0002.avsc",
            "2edee9f595dcb345",
        ),
    ];
    for (path, header_hex) in expected {
        let file = schemas()
            .iter()
            .flat_map(|f| f.history)
            .find(|h| h.path == path)
            .unwrap();
        let bytes = fingerprint_of_json(file.text).unwrap().to_le_bytes();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, header_hex, "{path}");
    }
}
