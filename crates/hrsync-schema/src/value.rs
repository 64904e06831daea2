//! Small helpers for building and taking apart `apache_avro` values.

use std::collections::HashMap;

use apache_avro::types::Value;
use hrsync_domain::{DomainError, NaiveDate, Timestamp};

use crate::error::{DecodeError, EncodeError};

use hrsync_domain::Datelike;

/// 1970-01-01 (day 0 of the Avro `date` logical type) counted in days from
/// 0001-01-01, day 1 of chrono's common era count.
pub(crate) const EPOCH_DAYS_FROM_CE: i32 = 719_163;

// ---- encoding ----------------------------------------------------------

/// An optional value as the `["null", T]` union.
pub(crate) fn optional(value: Option<Value>) -> Value {
    match value {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(v) => Value::Union(1, Box::new(v)),
    }
}

pub(crate) fn opt_string(value: Option<&str>) -> Value {
    optional(value.map(|s| Value::String(s.to_owned())))
}

pub(crate) fn string(value: &str) -> Value {
    Value::String(value.to_owned())
}

pub(crate) fn strings<S: AsRef<str>>(values: &[S]) -> Value {
    Value::Array(values.iter().map(|s| string(s.as_ref())).collect())
}

pub(crate) fn timestamp(value: Timestamp) -> Value {
    Value::TimestampMillis(value.as_millis())
}

/// A date as days since 1970-01-01. Every `NaiveDate` fits an `i32`.
pub(crate) fn date(value: NaiveDate) -> Value {
    Value::Date(value.num_days_from_ce() - EPOCH_DAYS_FROM_CE)
}

/// An enum value; `index` is the position of `symbol` in the schema.
pub(crate) fn symbol(index: usize, symbol: &str) -> Value {
    Value::Enum(index as u32, symbol.to_owned())
}

/// A `u64` as an Avro `long`.
pub(crate) fn long(field: &str, value: u64) -> Result<Value, EncodeError> {
    i64::try_from(value)
        .map(Value::Long)
        .map_err(|_| EncodeError::Invalid {
            field: field.to_owned(),
            reason: format!("{value} is above the Avro long maximum {}", i64::MAX),
        })
}

/// A `u32` as an Avro `int`.
pub(crate) fn int(field: &str, value: u32) -> Result<Value, EncodeError> {
    i32::try_from(value)
        .map(Value::Int)
        .map_err(|_| EncodeError::Invalid {
            field: field.to_owned(),
            reason: format!("{value} is above the Avro int maximum {}", i32::MAX),
        })
}

// ---- decoding ----------------------------------------------------------

fn corrupt(path: &str, expected: &str, found: &Value) -> DecodeError {
    DecodeError::Corrupt(format!("{path}: expected {expected}, found {found:?}"))
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// Maps a domain validation error to [`DecodeError::Invalid`] at `path`.
pub(crate) fn invalid(path: &str) -> impl FnOnce(DomainError) -> DecodeError + '_ {
    move |e| DecodeError::Invalid {
        field: path.to_owned(),
        reason: e.to_string(),
    }
}

/// A decoded record whose fields are taken out one by one.
#[derive(Debug)]
pub(crate) struct Record {
    path: String,
    fields: Vec<(String, Value)>,
}

impl Record {
    /// `value` must be a record; `path` names it in errors (empty for the
    /// top-level record).
    pub(crate) fn new(value: Value, path: impl Into<String>) -> Result<Self, DecodeError> {
        let path = path.into();
        match value {
            Value::Record(fields) => Ok(Self { path, fields }),
            other => Err(corrupt(&path, "a record", &other)),
        }
    }

    /// The path of field `name`, for errors.
    pub(crate) fn path(&self, name: &str) -> String {
        join(&self.path, name)
    }

    /// Removes and returns field `name`.
    pub(crate) fn take(&mut self, name: &str) -> Result<Value, DecodeError> {
        let pos = self
            .fields
            .iter()
            .position(|(n, _)| n == name)
            .ok_or_else(|| DecodeError::Corrupt(format!("{} is missing", self.path(name))))?;
        Ok(self.fields.swap_remove(pos).1)
    }

    /// Removes field `name`, which is a `["null", T]` union.
    pub(crate) fn take_optional(&mut self, name: &str) -> Result<Option<Value>, DecodeError> {
        match self.take(name)? {
            Value::Union(_, inner) => match *inner {
                Value::Null => Ok(None),
                v => Ok(Some(v)),
            },
            Value::Null => Ok(None),
            other => Err(corrupt(&self.path(name), "an optional value", &other)),
        }
    }

    pub(crate) fn string(&mut self, name: &str) -> Result<String, DecodeError> {
        let v = self.take(name)?;
        as_string(&self.path(name), v)
    }

    pub(crate) fn opt_string(&mut self, name: &str) -> Result<Option<String>, DecodeError> {
        let path = self.path(name);
        self.take_optional(name)?
            .map(|v| as_string(&path, v))
            .transpose()
    }

    /// A string validated by a domain constructor.
    pub(crate) fn parse<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(String) -> Result<T, DomainError>,
    ) -> Result<T, DecodeError> {
        let s = self.string(name)?;
        parse(s).map_err(invalid(&self.path(name)))
    }

    pub(crate) fn boolean(&mut self, name: &str) -> Result<bool, DecodeError> {
        match self.take(name)? {
            Value::Boolean(b) => Ok(b),
            other => Err(corrupt(&self.path(name), "a boolean", &other)),
        }
    }

    pub(crate) fn long(&mut self, name: &str) -> Result<i64, DecodeError> {
        match self.take(name)? {
            Value::Long(l) => Ok(l),
            other => Err(corrupt(&self.path(name), "a long", &other)),
        }
    }

    /// A `long` that must not be negative.
    pub(crate) fn unsigned_long(&mut self, name: &str) -> Result<u64, DecodeError> {
        let l = self.long(name)?;
        u64::try_from(l).map_err(|_| DecodeError::Invalid {
            field: self.path(name),
            reason: format!("{l} is negative"),
        })
    }

    pub(crate) fn int(&mut self, name: &str) -> Result<i32, DecodeError> {
        match self.take(name)? {
            Value::Int(i) => Ok(i),
            other => Err(corrupt(&self.path(name), "an int", &other)),
        }
    }

    pub(crate) fn timestamp(&mut self, name: &str) -> Result<Timestamp, DecodeError> {
        let v = self.take(name)?;
        as_timestamp(&self.path(name), v)
    }

    pub(crate) fn opt_timestamp(&mut self, name: &str) -> Result<Option<Timestamp>, DecodeError> {
        let path = self.path(name);
        self.take_optional(name)?
            .map(|v| as_timestamp(&path, v))
            .transpose()
    }

    pub(crate) fn opt_date(&mut self, name: &str) -> Result<Option<NaiveDate>, DecodeError> {
        let path = self.path(name);
        self.take_optional(name)?
            .map(|v| match v {
                Value::Date(days) => days
                    .checked_add(EPOCH_DAYS_FROM_CE)
                    .and_then(NaiveDate::from_num_days_from_ce_opt)
                    .ok_or_else(|| DecodeError::Invalid {
                        field: path.clone(),
                        reason: format!("{days} days from 1970-01-01 is out of range"),
                    }),
                other => Err(corrupt(&path, "a date", &other)),
            })
            .transpose()
    }

    /// An enum symbol.
    pub(crate) fn symbol(&mut self, name: &str) -> Result<String, DecodeError> {
        match self.take(name)? {
            Value::Enum(_, s) => Ok(s),
            other => Err(corrupt(&self.path(name), "an enum symbol", &other)),
        }
    }

    pub(crate) fn array(&mut self, name: &str) -> Result<Vec<Value>, DecodeError> {
        match self.take(name)? {
            Value::Array(items) => Ok(items),
            other => Err(corrupt(&self.path(name), "an array", &other)),
        }
    }

    pub(crate) fn strings(&mut self, name: &str) -> Result<Vec<String>, DecodeError> {
        let path = self.path(name);
        self.array(name)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| as_string(&format!("{path}[{i}]"), v))
            .collect()
    }

    pub(crate) fn map(&mut self, name: &str) -> Result<HashMap<String, Value>, DecodeError> {
        match self.take(name)? {
            Value::Map(m) => Ok(m),
            other => Err(corrupt(&self.path(name), "a map", &other)),
        }
    }

    /// A nested record.
    pub(crate) fn record(&mut self, name: &str) -> Result<Record, DecodeError> {
        let v = self.take(name)?;
        Record::new(v, self.path(name))
    }
}

pub(crate) fn as_string(path: &str, value: Value) -> Result<String, DecodeError> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(corrupt(path, "a string", &other)),
    }
}

fn as_timestamp(path: &str, value: Value) -> Result<Timestamp, DecodeError> {
    match value {
        Value::TimestampMillis(ms) => Timestamp::from_millis(ms).map_err(invalid(path)),
        other => Err(corrupt(path, "a timestamp-millis", &other)),
    }
}
