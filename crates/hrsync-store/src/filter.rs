//! A `WHERE` clause built from optional filters, with its placeholders
//! numbered in the order its values are bound (`$1`, `$2`, …, as both
//! backends accept).

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;

/// One bound value.
#[derive(Debug, Clone)]
enum Value {
    Text(String),
    Int(i64),
}

/// Conditions joined with `AND`, and their values.
#[derive(Debug, Clone, Default)]
pub struct Where {
    conditions: Vec<String>,
    values: Vec<Value>,
}

impl Where {
    fn next(&mut self, value: Value) -> String {
        self.values.push(value);
        format!("${}", self.values.len())
    }

    /// `column = value`, if `value` is given.
    pub fn equals(&mut self, column: &str, value: Option<&str>) {
        if let Some(value) = value {
            let p = self.next(Value::Text(value.to_owned()));
            self.conditions.push(format!("{column} = {p}"));
        }
    }

    /// `column LIKE pattern`, the backslash escaping `%`, `_` and itself.
    pub fn like(&mut self, column: &str, pattern: &str) {
        let p = self.next(Value::Text(pattern.to_owned()));
        self.conditions
            .push(format!("{column} LIKE {p} ESCAPE '\\'"));
    }

    /// `column_and_operator value` for a text value (e.g.
    /// `"employee_id >"`), if `value` is given.
    pub fn compare_text(&mut self, column_and_operator: &str, value: Option<&str>) {
        if let Some(value) = value {
            let p = self.next(Value::Text(value.to_owned()));
            self.conditions.push(format!("{column_and_operator} {p}"));
        }
    }

    /// `column_and_operator value` (e.g. `"at_ms >="`), if `value` is given.
    pub fn compare(&mut self, column_and_operator: &str, value: Option<i64>) {
        if let Some(value) = value {
            let p = self.next(Value::Int(value));
            self.conditions.push(format!("{column_and_operator} {p}"));
        }
    }

    /// `column IN (values…)`; no values selects nothing.
    pub fn one_of(&mut self, column: &str, values: &[String]) {
        if values.is_empty() {
            self.conditions.push("1 = 0".to_owned());
            return;
        }
        let placeholders: Vec<String> = values
            .iter()
            .map(|v| self.next(Value::Text(v.clone())))
            .collect();
        self.conditions
            .push(format!("{column} IN ({})", placeholders.join(", ")));
    }

    /// Keyset paging, newest first: rows before `(at, id)` in
    /// `ORDER BY time DESC, id DESC`.
    pub fn before(&mut self, time: &str, at: i64, id_column: &str, id: &str) {
        let a = self.next(Value::Int(at));
        let b = self.next(Value::Int(at));
        let c = self.next(Value::Text(id.to_owned()));
        self.conditions.push(format!(
            "({time} < {a} OR ({time} = {b} AND {id_column} < {c}))"
        ));
    }

    /// ` WHERE …`, or nothing without conditions.
    pub fn clause(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conditions.join(" AND "))
        }
    }

    /// Binds the values to `query`, in order.
    pub fn bind<'q>(
        &'q self,
        mut query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        for value in &self.values {
            query = match value {
                Value::Text(text) => query.bind(text.as_str()),
                Value::Int(n) => query.bind(*n),
            };
        }
        query
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_binding_order() {
        let mut sql = Where::default();
        sql.equals("app", Some("slack"));
        sql.equals("outcome", None);
        sql.compare("at_ms >=", Some(5));
        sql.before("at_ms", 9, "audit_id", "x");
        sql.one_of("operation", &["CREATE".to_owned(), "PATCH".to_owned()]);
        assert_eq!(
            sql.clause(),
            " WHERE app = $1 AND at_ms >= $2 AND (at_ms < $3 OR (at_ms = $4 AND audit_id < $5)) \
             AND operation IN ($6, $7)"
        );
        assert_eq!(Where::default().clause(), "");
    }
}
