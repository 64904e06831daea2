//! A direct Avro binary writer for the hot path: the projector encodes one
//! `DirectoryChange` per changed person, and apache-avro's generic path
//! (domain type → `Value` tree → schema validation → encoding, with a field
//! lookup table per record) cost about 11 µs per change. This writes the
//! same bytes straight from the domain type, field by field in the order of
//! `schemas/directory.changes.v1.avsc`.
//!
//! The generic path stays the reference: a property test compares the two
//! byte for byte over arbitrary changes, and a test fails if the schema's
//! fields change without this writer. (Maps are written in key order;
//! apache-avro writes them in its hash map's order, so its bytes for a
//! change with several custom attributes differ from run to run.)

use hrsync_domain::{Attribute, AttributeType, DirectoryChange, WorkerAttributes};

use crate::EncodeError;

/// Avro binary encoding of the parts of the specification this schema uses.
struct Datum(Vec<u8>);

impl Datum {
    /// `long` (and `int`): zig-zag, then a base-128 varint.
    fn long(&mut self, value: i64) {
        let mut n = ((value << 1) ^ (value >> 63)) as u64;
        while n >= 0x80 {
            self.0.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.0.push(n as u8);
    }

    fn len(&mut self, len: usize) {
        // A `Vec` never holds more than `isize::MAX` items.
        self.long(len as i64);
    }

    fn string(&mut self, value: &str) {
        self.len(value.len());
        self.0.extend_from_slice(value.as_bytes());
    }

    fn boolean(&mut self, value: bool) {
        self.0.push(u8::from(value));
    }

    /// `["null", "string"]`.
    fn opt_string(&mut self, value: Option<&str>) {
        match value {
            None => self.long(0),
            Some(s) => {
                self.long(1);
                self.string(s);
            }
        }
    }

    /// `["null", {"type": "long", ...}]`.
    fn opt_long(&mut self, value: Option<i64>) {
        match value {
            None => self.long(0),
            Some(v) => {
                self.long(1);
                self.long(v);
            }
        }
    }

    /// An array or map: one block holding every item (none: just the end).
    fn block<T>(
        &mut self,
        items: impl ExactSizeIterator<Item = T>,
        mut item: impl FnMut(&mut Self, T),
    ) {
        if items.len() > 0 {
            self.len(items.len());
            for i in items {
                item(self, i);
            }
        }
        self.long(0);
    }

    fn strings<'a>(&mut self, items: impl ExactSizeIterator<Item = &'a str>) {
        self.block(items, Datum::string);
    }
}

/// `WorkerAttributes`, as embedded in `Profile` (and in `hr.lifecycle.v1`):
/// the standard attributes in canonical order (the schema's field order; a
/// test checks it), then `custom`.
fn worker_attributes(d: &mut Datum, a: &WorkerAttributes) {
    for attribute in Attribute::STANDARD {
        let text = a.text(&attribute);
        match attribute.value_type() {
            AttributeType::Text => d.string(text.unwrap_or_default()),
            AttributeType::OptionalText => d.opt_string(text),
            AttributeType::EmploymentType => d.len(crate::mapping::employment_type_index(text)),
        }
    }
    d.block(a.custom.iter(), |d, (k, v)| {
        d.string(k);
        d.string(v);
    });
}

/// The datum of `change` (no header).
pub(crate) fn directory_change(
    change: &DirectoryChange,
    out: Vec<u8>,
) -> Result<Vec<u8>, EncodeError> {
    let version = i64::try_from(change.version).map_err(|_| EncodeError::Invalid {
        field: "version".to_owned(),
        reason: format!(
            "{} is above the Avro long maximum {}",
            change.version,
            i64::MAX
        ),
    })?;
    let mut d = Datum(out);
    d.string(change.person_id.as_str());
    d.string(change.employee_id.as_str());
    d.long(version);
    d.len(crate::mapping::lifecycle_state_index(
        change.lifecycle_state,
    ));
    let p = &change.profile;
    worker_attributes(&mut d, &p.attributes);
    d.string(p.time_zone.name());
    d.opt_long(p.start_at.map(|t| t.as_millis()));
    d.opt_long(p.terminate_at.map(|t| t.as_millis()));
    d.strings(change.groups.iter().map(String::as_str));
    d.block(change.apps.iter(), |d, a| {
        d.string(&a.app);
        d.strings(a.groups.iter().map(String::as_str));
    });
    d.strings(change.caused_by.iter().map(|e| e.as_str()));
    d.boolean(change.priority);
    d.long(change.changed_at.as_millis());
    Ok(d.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longs_are_zigzag_varints() {
        // Values from the Avro specification's table, and the extremes.
        for (value, bytes) in [
            (0_i64, vec![0x00]),
            (-1, vec![0x01]),
            (1, vec![0x02]),
            (-2, vec![0x03]),
            (2, vec![0x04]),
            (-64, vec![0x7f]),
            (64, vec![0x80, 0x01]),
            (
                i64::MAX,
                vec![0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
            (
                i64::MIN,
                vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut d = Datum(Vec::new());
            d.long(value);
            assert_eq!(d.0, bytes, "{value}");
        }
    }

    /// The writer above follows the schema field by field: a field added,
    /// removed or reordered in the schema must be mirrored here (the
    /// property test in `tests/codec.rs` then checks the bytes).
    #[test]
    fn the_schema_has_the_fields_this_writer_writes() {
        use apache_avro::Schema;
        fn fields(schema: &Schema) -> Vec<(String, &Schema)> {
            match schema {
                Schema::Record(r) => r
                    .fields
                    .iter()
                    .map(|f| (f.name.clone(), &f.schema))
                    .collect(),
                other => panic!("record expected, got {other:?}"),
            }
        }
        fn names(fields: &[(String, &Schema)]) -> Vec<String> {
            fields.iter().map(|(n, _)| n.clone()).collect()
        }
        let root = fields(crate::Contract::DirectoryChanges.schema().unwrap());
        assert_eq!(
            names(&root),
            [
                "person_id",
                "employee_id",
                "version",
                "lifecycle_state",
                "profile",
                "groups",
                "apps",
                "caused_by",
                "priority",
                "changed_at"
            ]
        );
        let profile = fields(root[4].1);
        assert_eq!(
            names(&profile),
            ["attributes", "time_zone", "start_at", "terminate_at"]
        );
        // The attributes before `custom` are the domain's list, which the
        // writer iterates (checked in `tests/attributes.rs`).
        let attributes = names(&fields(profile[0].1));
        assert_eq!(attributes.last().map(String::as_str), Some("custom"));
        let Schema::Array(apps) = root[6].1 else {
            panic!("apps is an array");
        };
        assert_eq!(names(&fields(&apps.items)), ["app", "groups"]);
    }
}
