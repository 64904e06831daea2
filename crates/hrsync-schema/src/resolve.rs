//! Avro schema resolution: turns a value decoded with the writer's schema
//! into the shape of the reader's schema.
//!
//! Why not `apache_avro::types::Value::resolve`: in 0.21 it picks a reader
//! union branch for a record by trying each branch structurally, not by
//! name. Our payload union holds `Hire` and `Rehire`, which have the same
//! fields, and records whose fields all have defaults, so a `Rehire` written
//! with an older schema could come out as a `Hire`. This resolver follows
//! the specification: the writer's union branch is known from the data, and
//! the reader branch is chosen by the named type's name (or by primitive
//! type), first exact match, then promotion.

use std::collections::HashMap;

use apache_avro::schema::{Name, RecordSchema, Schema, UnionSchema};
use apache_avro::types::Value;
use serde_json::Value as Json;

/// Why data written with one schema cannot be read with another: the schemas
/// are incompatible (a release broke the evolution rule in
/// `schemas/README.md`) or the datum does not match its writer schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ResolveError {
    /// A named type used but never defined.
    #[error("reference to undefined type {name}")]
    UndefinedType { name: String },
    /// The writer's schema is a union, the datum is not.
    #[error("union value expected")]
    UnionExpected,
    /// A union branch index beyond the writer's union.
    #[error("union index {index} out of range")]
    UnionIndex { index: u32 },
    /// A symbol the reader's enum lacks, without an enum default.
    #[error("symbol {symbol} is not in enum {enum_name} and it has no default")]
    UnknownSymbol { symbol: String, enum_name: String },
    /// A writer field absent from the datum.
    #[error("field {field} missing from the data")]
    MissingField { field: String },
    /// A reader field the writer lacks, without a default.
    #[error("field {record}.{field} is not in the writer's schema and has no default")]
    NoDefault { record: String, field: String },
    /// No reader union branch accepts the writer's type.
    #[error("no branch of the reader's union matches the writer's type")]
    NoMatchingBranch,
    /// An enum default that is not one of the enum's symbols.
    #[error("default symbol {symbol} is not in the enum")]
    DefaultSymbol { symbol: String },
    /// Bytes read as a string that are not UTF-8.
    #[error("bytes are not valid UTF-8")]
    NotUtf8,
    /// A value the reader's type cannot hold, even by promotion.
    #[error("cannot read {value} as {reader}")]
    Incompatible { value: String, reader: String },
    /// A field default that does not fit its field's type.
    #[error("default {default} does not match {schema}")]
    BadDefault { default: String, schema: String },
}

type Result<T, E = ResolveError> = std::result::Result<T, E>;

/// The named types of a schema, by full name, so `Schema::Ref`s can be
/// followed.
#[derive(Debug, Default)]
pub(crate) struct Names(HashMap<String, Schema>);

fn full(name: &Name) -> String {
    name.fullname(None)
}

impl Names {
    pub(crate) fn collect(schema: &Schema) -> Self {
        let mut names = Self::default();
        names.walk(schema);
        names
    }

    fn walk(&mut self, schema: &Schema) {
        match schema {
            Schema::Record(r) => {
                self.0.insert(full(&r.name), schema.clone());
                for f in &r.fields {
                    self.walk(&f.schema);
                }
            }
            Schema::Enum(e) => {
                self.0.insert(full(&e.name), schema.clone());
            }
            Schema::Fixed(f) => {
                self.0.insert(full(&f.name), schema.clone());
            }
            Schema::Array(a) => self.walk(&a.items),
            Schema::Map(m) => self.walk(&m.types),
            Schema::Union(u) => u.variants().iter().for_each(|v| self.walk(v)),
            _ => {}
        }
    }

    fn deref<'a>(&'a self, schema: &'a Schema) -> Result<&'a Schema> {
        match schema {
            Schema::Ref { name } => self
                .0
                .get(&full(name))
                .ok_or_else(|| ResolveError::UndefinedType { name: full(name) }),
            other => Ok(other),
        }
    }
}

/// A writer and a reader schema with their named types.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pair<'a> {
    pub(crate) writer: &'a Schema,
    pub(crate) writer_names: &'a Names,
    pub(crate) reader: &'a Schema,
    pub(crate) reader_names: &'a Names,
}

/// Resolves `value`, decoded with `pair.writer`, to `pair.reader`.
///
/// # Errors
/// Why the data cannot be read with the reader schema.
pub(crate) fn resolve(value: Value, pair: Pair<'_>) -> Result<Value> {
    let w = pair.writer_names.deref(pair.writer)?;
    let r = pair.reader_names.deref(pair.reader)?;
    let at = |writer, reader| Pair {
        writer,
        reader,
        ..pair
    };

    // The writer's union branch is in the data.
    if let Schema::Union(wu) = w {
        let Value::Union(i, inner) = value else {
            return Err(ResolveError::UnionExpected);
        };
        let branch = wu
            .variants()
            .get(i as usize)
            .ok_or(ResolveError::UnionIndex { index: i })?;
        return resolve(*inner, at(branch, r));
    }
    if let Schema::Union(ru) = r {
        let (j, branch) = pick_branch(w, ru, pair)?;
        return Ok(Value::Union(
            j as u32,
            Box::new(resolve(value, at(w, branch))?),
        ));
    }

    match (w, r, value) {
        (Schema::Record(wr), Schema::Record(rr), Value::Record(fields)) => {
            record(wr, rr, fields, pair)
        }
        (Schema::Enum(_), Schema::Enum(re), Value::Enum(_, symbol)) => {
            match re.symbols.iter().position(|s| *s == symbol) {
                Some(i) => Ok(Value::Enum(i as u32, symbol)),
                None => match &re.default {
                    Some(d) => enum_value(&re.symbols, d),
                    None => Err(ResolveError::UnknownSymbol {
                        symbol,
                        enum_name: full(&re.name),
                    }),
                },
            }
        }
        (Schema::Array(wa), Schema::Array(ra), Value::Array(items)) => items
            .into_iter()
            .map(|v| resolve(v, at(&wa.items, &ra.items)))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        (Schema::Map(wm), Schema::Map(rm), Value::Map(entries)) => entries
            .into_iter()
            .map(|(k, v)| Ok((k, resolve(v, at(&wm.types, &rm.types))?)))
            .collect::<Result<_>>()
            .map(Value::Map),
        (Schema::Fixed(wf), Schema::Fixed(rf), v @ Value::Fixed(..)) if wf.size == rf.size => Ok(v),
        (_, r, v) => primitive(v, r),
    }
}

fn record(
    wr: &RecordSchema,
    rr: &RecordSchema,
    mut fields: Vec<(String, Value)>,
    pair: Pair<'_>,
) -> Result<Value> {
    let mut out = Vec::with_capacity(rr.fields.len());
    for rf in &rr.fields {
        let aliases = rf.aliases.as_deref().unwrap_or_default();
        let wf = wr
            .fields
            .iter()
            .find(|wf| wf.name == rf.name || aliases.contains(&wf.name));
        let value = match wf {
            Some(wf) => {
                let pos = fields
                    .iter()
                    .position(|(n, _)| *n == wf.name)
                    .ok_or_else(|| ResolveError::MissingField {
                        field: wf.name.clone(),
                    })?;
                let (_, v) = fields.swap_remove(pos);
                resolve(
                    v,
                    Pair {
                        writer: &wf.schema,
                        reader: &rf.schema,
                        ..pair
                    },
                )?
            }
            None => {
                let default = rf.default.as_ref().ok_or_else(|| ResolveError::NoDefault {
                    record: full(&rr.name),
                    field: rf.name.clone(),
                })?;
                from_default(default, &rf.schema, pair.reader_names)?
            }
        };
        out.push((rf.name.clone(), value));
    }
    Ok(Value::Record(out))
}

/// How well a writer schema matches a reader schema, for union branches.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Match {
    Exact,
    Promotion,
}

fn matches(w: &Schema, r: &Schema) -> Option<Match> {
    use Schema as S;
    let unqualified = |n: &Name| n.name.rsplit('.').next().unwrap_or_default().to_owned();
    match (w, r) {
        (S::Record(a), S::Record(b)) => (unqualified(&a.name) == unqualified(&b.name)
            || b.aliases
                .iter()
                .flatten()
                .any(|al| al.name() == a.name.name))
        .then_some(Match::Exact),
        (S::Enum(a), S::Enum(b)) => {
            (unqualified(&a.name) == unqualified(&b.name)).then_some(Match::Exact)
        }
        (S::Fixed(a), S::Fixed(b)) => (unqualified(&a.name) == unqualified(&b.name)
            && a.size == b.size)
            .then_some(Match::Exact),
        (S::Array(_), S::Array(_)) | (S::Map(_), S::Map(_)) => Some(Match::Exact),
        (a, b) if std::mem::discriminant(a) == std::mem::discriminant(b) => Some(Match::Exact),
        (S::Int, S::Long | S::Float | S::Double | S::TimestampMillis)
        | (S::Long, S::Float | S::Double | S::TimestampMillis)
        | (S::Float, S::Double)
        | (S::String, S::Bytes)
        | (S::Bytes, S::String)
        | (S::Date, S::Int)
        | (S::Int, S::Date)
        | (S::TimestampMillis, S::Long) => Some(Match::Promotion),
        _ => None,
    }
}

fn pick_branch<'a>(w: &Schema, ru: &'a UnionSchema, pair: Pair<'a>) -> Result<(usize, &'a Schema)> {
    let mut best: Option<(Match, usize, &Schema)> = None;
    for (j, branch) in ru.variants().iter().enumerate() {
        let branch = pair.reader_names.deref(branch)?;
        if let Some(m) = matches(w, branch) {
            if best.as_ref().is_none_or(|(b, _, _)| m < *b) {
                best = Some((m, j, branch));
            }
        }
    }
    best.map(|(_, j, b)| (j, b))
        .ok_or(ResolveError::NoMatchingBranch)
}

fn enum_value(symbols: &[String], symbol: &str) -> Result<Value> {
    symbols
        .iter()
        .position(|s| s == symbol)
        .map(|i| Value::Enum(i as u32, symbol.to_owned()))
        .ok_or_else(|| ResolveError::DefaultSymbol {
            symbol: symbol.to_owned(),
        })
}

/// Converts a primitive (or logical) value to the reader's primitive type,
/// applying the promotions the specification allows.
fn primitive(value: Value, r: &Schema) -> Result<Value> {
    use Schema as S;
    use Value as V;
    Ok(match (value, r) {
        (V::Null, S::Null) => V::Null,
        (V::Boolean(b), S::Boolean) => V::Boolean(b),
        (V::Int(i) | V::Date(i), S::Int) => V::Int(i),
        (V::Int(i) | V::Date(i), S::Date) => V::Date(i),
        (V::Int(i), S::Long) => V::Long(i.into()),
        (V::Int(i), S::TimestampMillis) => V::TimestampMillis(i.into()),
        (V::Long(l) | V::TimestampMillis(l), S::Long) => V::Long(l),
        (V::Long(l) | V::TimestampMillis(l), S::TimestampMillis) => V::TimestampMillis(l),
        (V::Int(i), S::Float) => V::Float(i as f32),
        (V::Long(l), S::Float) => V::Float(l as f32),
        (V::Float(f), S::Float) => V::Float(f),
        (V::Int(i), S::Double) => V::Double(i.into()),
        (V::Long(l), S::Double) => V::Double(l as f64),
        (V::Float(f), S::Double) => V::Double(f.into()),
        (V::Double(d), S::Double) => V::Double(d),
        (V::String(s), S::String) => V::String(s),
        (V::Bytes(b), S::String) => {
            V::String(String::from_utf8(b).map_err(|_| ResolveError::NotUtf8)?)
        }
        (V::String(s), S::Bytes) => V::Bytes(s.into_bytes()),
        (V::Bytes(b), S::Bytes) => V::Bytes(b),
        (v, r) => {
            return Err(ResolveError::Incompatible {
                value: format!("{v:?}"),
                reader: format!("{r:?}"),
            })
        }
    })
}

/// The value of a field default (JSON, as in the schema) for the reader's
/// field schema.
fn from_default(json: &Json, schema: &Schema, names: &Names) -> Result<Value> {
    use Schema as S;
    let schema = names.deref(schema)?;
    let bad = || ResolveError::BadDefault {
        default: json.to_string(),
        schema: format!("{schema:?}"),
    };
    Ok(match (schema, json) {
        (S::Null, Json::Null) => Value::Null,
        (S::Boolean, Json::Bool(b)) => Value::Boolean(*b),
        (S::Int, Json::Number(n)) => {
            Value::Int(n.as_i64().and_then(|i| i.try_into().ok()).ok_or_else(bad)?)
        }
        (S::Date, Json::Number(n)) => {
            Value::Date(n.as_i64().and_then(|i| i.try_into().ok()).ok_or_else(bad)?)
        }
        (S::Long, Json::Number(n)) => Value::Long(n.as_i64().ok_or_else(bad)?),
        (S::TimestampMillis, Json::Number(n)) => {
            Value::TimestampMillis(n.as_i64().ok_or_else(bad)?)
        }
        (S::Float, Json::Number(n)) => Value::Float(n.as_f64().ok_or_else(bad)? as f32),
        (S::Double, Json::Number(n)) => Value::Double(n.as_f64().ok_or_else(bad)?),
        (S::String, Json::String(s)) => Value::String(s.clone()),
        (S::Bytes, Json::String(s)) => Value::Bytes(s.chars().map(|c| c as u32 as u8).collect()),
        (S::Enum(e), Json::String(s)) => enum_value(&e.symbols, s)?,
        (S::Array(a), Json::Array(items)) => Value::Array(
            items
                .iter()
                .map(|i| from_default(i, &a.items, names))
                .collect::<Result<_, _>>()?,
        ),
        (S::Map(m), Json::Object(entries)) => Value::Map(
            entries
                .iter()
                .map(|(k, v)| Ok((k.clone(), from_default(v, &m.types, names)?)))
                .collect::<Result<_>>()?,
        ),
        (S::Record(r), Json::Object(entries)) => Value::Record(
            r.fields
                .iter()
                .map(|f| {
                    let v = entries
                        .get(&f.name)
                        .or(f.default.as_ref())
                        .ok_or_else(bad)?;
                    Ok((f.name.clone(), from_default(v, &f.schema, names)?))
                })
                .collect::<Result<_>>()?,
        ),
        // A union's default is for one of its branches; the first that
        // accepts it (the specification says the first branch).
        (S::Union(u), json) => u
            .variants()
            .iter()
            .enumerate()
            .find_map(|(i, b)| {
                from_default(json, b, names)
                    .ok()
                    .map(|v| Value::Union(i as u32, Box::new(v)))
            })
            .ok_or_else(bad)?,
        _ => return Err(bad()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::{from_avro_datum, to_avro_datum};

    fn resolve_datum(writer: &str, reader: &str, value: Value) -> Result<Value> {
        let w = Schema::parse_str(writer).unwrap();
        let r = Schema::parse_str(reader).unwrap();
        let bytes = to_avro_datum(&w, value).unwrap();
        let decoded = from_avro_datum(&w, &mut bytes.as_slice(), None).unwrap();
        let (wn, rn) = (Names::collect(&w), Names::collect(&r));
        resolve(
            decoded,
            Pair {
                writer: &w,
                writer_names: &wn,
                reader: &r,
                reader_names: &rn,
            },
        )
    }

    const TWINS_V1: &str = r#"{"type":"record","name":"E","namespace":"t","fields":[
        {"name":"p","type":[
            {"type":"record","name":"A","fields":[{"name":"x","type":"string"}]},
            {"type":"record","name":"B","fields":[{"name":"x","type":"string"}]}]}]}"#;
    // Reader: branches reordered, a new branch first whose fields all have
    // defaults, a new field with a default.
    const TWINS_V2: &str = r#"{"type":"record","name":"E","namespace":"t","fields":[
        {"name":"p","type":[
            {"type":"record","name":"C","fields":[{"name":"y","type":["null","string"],"default":null}]},
            {"type":"record","name":"B","fields":[{"name":"x","type":"string"}]},
            {"type":"record","name":"A","fields":[{"name":"x","type":"string"}]}]},
        {"name":"n","type":{"type":"map","values":"long"},"default":{"k":7}}]}"#;

    #[test]
    fn union_branches_resolve_by_name() {
        let v1 = |branch: u32| {
            Value::Record(vec![(
                "p".into(),
                Value::Union(
                    branch,
                    Box::new(Value::Record(vec![("x".into(), Value::String("v".into()))])),
                ),
            )])
        };
        let Value::Record(a) = resolve_datum(TWINS_V1, TWINS_V2, v1(0)).unwrap() else {
            panic!("record expected")
        };
        assert!(
            matches!(&a[0].1, Value::Union(2, _)),
            "A is branch 2: {a:?}"
        );
        let Value::Record(b) = resolve_datum(TWINS_V1, TWINS_V2, v1(1)).unwrap() else {
            panic!("record expected")
        };
        assert!(
            matches!(&b[0].1, Value::Union(1, _)),
            "B is branch 1: {b:?}"
        );
        assert_eq!(
            b[1],
            (
                "n".into(),
                Value::Map([("k".to_owned(), Value::Long(7))].into_iter().collect())
            )
        );
    }

    #[test]
    fn promotions_enum_defaults_and_missing_fields() {
        let w = r#"{"type":"record","name":"R","fields":[
            {"name":"i","type":"int"},
            {"name":"e","type":{"type":"enum","name":"E","symbols":["A","NEW"]}},
            {"name":"o","type":"int"},
            {"name":"gone","type":"string"}]}"#;
        let r = r#"{"type":"record","name":"R","fields":[
            {"name":"i","type":"long"},
            {"name":"e","type":{"type":"enum","name":"E","symbols":["A","UNKNOWN"],"default":"UNKNOWN"}},
            {"name":"o","type":["null","long"]},
            {"name":"added","type":["null",{"type":"int","logicalType":"date"}],"default":null}]}"#;
        let v = Value::Record(vec![
            ("i".into(), Value::Int(5)),
            ("e".into(), Value::Enum(1, "NEW".into())),
            ("o".into(), Value::Int(9)),
            ("gone".into(), Value::String("x".into())),
        ]);
        assert_eq!(
            resolve_datum(w, r, v).unwrap(),
            Value::Record(vec![
                ("i".into(), Value::Long(5)),
                ("e".into(), Value::Enum(1, "UNKNOWN".into())),
                ("o".into(), Value::Union(1, Box::new(Value::Long(9)))),
                ("added".into(), Value::Union(0, Box::new(Value::Null))),
            ])
        );
    }

    #[test]
    fn incompatible_data_is_an_error() {
        let w = r#"{"type":"record","name":"R","fields":[{"name":"e","type":{"type":"enum","name":"E","symbols":["A","NEW"]}}]}"#;
        let r = r#"{"type":"record","name":"R","fields":[{"name":"e","type":{"type":"enum","name":"E","symbols":["A"]}},{"name":"req","type":"string"}]}"#;
        let v = Value::Record(vec![("e".into(), Value::Enum(1, "NEW".into()))]);
        assert!(resolve_datum(w, r, v)
            .unwrap_err()
            .to_string()
            .contains("NEW"));
        let v = Value::Record(vec![("e".into(), Value::Enum(0, "A".into()))]);
        assert!(resolve_datum(w, r, v)
            .unwrap_err()
            .to_string()
            .contains("no default"));
    }
}
