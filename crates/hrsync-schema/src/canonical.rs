//! Parsing Canonical Form and CRC-64-AVRO fingerprints, per the Avro
//! specification.
//!
//! Why not `Schema::canonical_form` from `apache-avro`: in 0.21 it keeps a
//! primitive with a logical type as `{"type":"long"}` where the specification
//! (and the Java, Python and fastavro implementations) reduce it to `"long"`
//! (see AVRO-4004). Our schemas use `timestamp-millis` and `date`, so its
//! fingerprints would differ from those of producers in other languages and
//! their messages would be rejected. This module computes the form from the
//! schema JSON exactly as the specification says and hashes it with
//! `apache-avro`'s [`Rabin`] digest. For schemas without logical types both
//! agree; a test checks that.

use apache_avro::rabin::Rabin;
use digest::Digest;
use serde_json::{Map, Value};

use crate::error::CanonicalFormError;

type Result<T, E = CanonicalFormError> = std::result::Result<T, E>;

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// The attributes kept by the [STRIP] rule, in the order of the [ORDER] rule.
const KEPT: [&str; 7] = [
    "name", "type", "fields", "symbols", "items", "values", "size",
];

/// The Parsing Canonical Form of a schema given as JSON text.
///
/// # Errors
/// A [`CanonicalFormError`] saying why the text is not a well-formed schema.
pub fn parsing_canonical_form(schema_json: &str) -> Result<String> {
    let json: Value = serde_json::from_str(schema_json)
        .map_err(|e| CanonicalFormError::NotJson(e.to_string()))?;
    let mut out = String::new();
    write_schema(&json, None, &mut out)?;
    Ok(out)
}

/// The CRC-64-AVRO (Rabin) fingerprint of a schema given as JSON text, as
/// the `u64` whose little-endian bytes go into a single-object header.
///
/// # Errors
/// As [`parsing_canonical_form`].
pub fn fingerprint(schema_json: &str) -> Result<u64> {
    parsing_canonical_form(schema_json).map(|pcf| rabin(&pcf))
}

/// CRC-64-AVRO of a canonical form.
pub(crate) fn rabin(canonical_form: &str) -> u64 {
    let digest = Rabin::digest(canonical_form.as_bytes());
    let mut le = [0u8; 8];
    le.copy_from_slice(&digest);
    u64::from_le_bytes(le)
}

/// The full name of a named type ([FULLNAMES] rule).
fn full_name(name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if !name.contains('.') && !ns.is_empty() => format!("{ns}.{name}"),
        _ => name.to_owned(),
    }
}

fn write_string(s: &str, out: &mut String) {
    // serde_json escapes exactly the characters JSON requires ([STRINGS]).
    out.push_str(&Value::String(s.to_owned()).to_string());
}

fn write_schema(schema: &Value, namespace: Option<&str>, out: &mut String) -> Result<()> {
    match schema {
        Value::String(name) if PRIMITIVES.contains(&name.as_str()) => write_string(name, out),
        // A reference to a named type.
        Value::String(name) => write_string(&full_name(name, namespace), out),
        Value::Array(branches) => {
            out.push('[');
            for (i, branch) in branches.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_schema(branch, namespace, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => write_object(map, namespace, out)?,
        other => {
            return Err(CanonicalFormError::NotASchema {
                found: other.to_string(),
            })
        }
    }
    Ok(())
}

fn write_object(map: &Map<String, Value>, namespace: Option<&str>, out: &mut String) -> Result<()> {
    let ty = map.get("type").ok_or(CanonicalFormError::NoType)?;
    let ty_name = match ty {
        Value::String(t) => t.as_str(),
        // {"type": {...}} or {"type": [...]}: the inner schema is the schema.
        nested => return write_schema(nested, namespace, out),
    };
    if PRIMITIVES.contains(&ty_name) {
        // [PRIMITIVES]: every other attribute (logicalType, ...) is stripped.
        write_string(ty_name, out);
        return Ok(());
    }
    let named = matches!(ty_name, "record" | "enum" | "fixed");
    let (name, inner_ns) = if named {
        let raw =
            map.get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| CanonicalFormError::Unnamed {
                    kind: ty_name.to_owned(),
                })?;
        let ns = map.get("namespace").and_then(Value::as_str).or(namespace);
        let full = full_name(raw, ns);
        let inner_ns = full.rsplit_once('.').map(|(ns, _)| ns.to_owned());
        (Some(full), inner_ns)
    } else if matches!(ty_name, "array" | "map") {
        (None, namespace.map(str::to_owned))
    } else {
        // A reference written as {"type": "Name"}.
        write_string(&full_name(ty_name, namespace), out);
        return Ok(());
    };
    let inner_ns = inner_ns.as_deref();

    out.push('{');
    let mut first = true;
    for key in KEPT {
        let Some(value) = map.get(key) else { continue };
        if key == "name" && !named {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        write_string(key, out);
        out.push(':');
        match key {
            "name" => write_string(name.as_deref().unwrap_or_default(), out),
            "type" => write_string(ty_name, out),
            "fields" => write_fields(value, inner_ns, out)?,
            "symbols" => out.push_str(&value.to_string()),
            "items" | "values" => write_schema(value, inner_ns, out)?,
            "size" => {
                let size = value
                    .as_u64()
                    .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
                    .ok_or_else(|| CanonicalFormError::BadFixedSize {
                        size: value.to_string(),
                    })?;
                out.push_str(&size.to_string());
            }
            _ => {}
        }
    }
    out.push('}');
    Ok(())
}

fn write_fields(fields: &Value, namespace: Option<&str>, out: &mut String) -> Result<()> {
    let fields = fields
        .as_array()
        .ok_or(CanonicalFormError::FieldsNotAnArray)?;
    out.push('[');
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let name = field
            .get("name")
            .and_then(Value::as_str)
            .ok_or(CanonicalFormError::UnnamedField)?;
        let ty = field
            .get("type")
            .ok_or_else(|| CanonicalFormError::UntypedField {
                name: name.to_owned(),
            })?;
        out.push_str("{\"name\":");
        write_string(name, out);
        out.push_str(",\"type\":");
        write_schema(ty, namespace, out)?;
        out.push('}');
    }
    out.push(']');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::Schema;

    #[test]
    fn logical_types_reduce_to_their_primitive() {
        let ts = r#"{"type":"long","logicalType":"timestamp-millis"}"#;
        assert_eq!(parsing_canonical_form(ts).unwrap(), "\"long\"");
        assert_eq!(fingerprint(ts).unwrap(), fingerprint("\"long\"").unwrap());
    }

    #[test]
    fn names_are_qualified_and_attributes_ordered() {
        let s = r#"{"namespace":"a.b","doc":"x","type":"record","name":"R","fields":[
            {"doc":"d","type":{"type":"enum","symbols":["X","Y"],"name":"E","default":"X"},"name":"e"},
            {"name":"again","type":"E","default":"X"},
            {"name":"other","type":{"type":"record","name":"c.S","fields":[{"name":"t","type":"T2"}]}},
            {"name":"t","type":{"type":"fixed","name":"T2","namespace":"","size":"4"}}]}"#;
        assert_eq!(
            parsing_canonical_form(s).unwrap(),
            r#"{"name":"a.b.R","type":"record","fields":[{"name":"e","type":{"name":"a.b.E","type":"enum","symbols":["X","Y"]}},{"name":"again","type":"a.b.E"},{"name":"other","type":{"name":"c.S","type":"record","fields":[{"name":"t","type":"c.T2"}]}},{"name":"t","type":{"name":"T2","type":"fixed","size":4}}]}"#
        );
    }

    #[test]
    fn agrees_with_apache_avro_without_logical_types() {
        let schemas = [
            r#""string""#,
            r#"{"type":"map","values":{"type":"array","items":"int"}}"#,
            r#"{"type":"record","name":"R","namespace":"n","fields":[
                {"name":"a","type":["null","string"],"default":null,"doc":"x"},
                {"name":"b","type":{"type":"record","name":"B","fields":[{"name":"x","type":"long"}]}},
                {"name":"c","type":"B"},
                {"name":"d","type":{"type":"enum","name":"D","symbols":["P","Q"]}}]}"#,
        ];
        for text in schemas {
            let schema = Schema::parse_str(text).unwrap();
            assert_eq!(
                parsing_canonical_form(text).unwrap(),
                schema.canonical_form()
            );
            let theirs = schema.fingerprint::<Rabin>().bytes;
            assert_eq!(fingerprint(text).unwrap().to_le_bytes().to_vec(), theirs);
        }
    }

    #[test]
    fn rejects_non_schemas() {
        assert!(parsing_canonical_form("not json").is_err());
        assert!(parsing_canonical_form("42").is_err());
        assert!(parsing_canonical_form(r#"{"name":"x"}"#).is_err());
        assert!(parsing_canonical_form(r#"{"type":"record","fields":[]}"#).is_err());
    }
}
