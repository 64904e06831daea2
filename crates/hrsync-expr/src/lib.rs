//! hrsync's expression language: [CEL](https://cel.dev) (the Common
//! Expression Language) over a person's profile.
//!
//! The projector's group rules and the provisioner's SCIM attribute mappings
//! both read a person as the same `person` map, built here:
//!
//! `person` has every standard attribute ([`PERSON_ATTRIBUTES`]: the
//! domain's list, `given_name`, `family_name`, `title`, `manager_id`, ...) as
//! a **string**, always present; `employment_type` is `"EMPLOYEE"`,
//! `"CONTRACTOR"` or `"INTERN"`. An attribute that is not set
//! is the empty string `""`. `person.custom` is a `map(string, string)` of the
//! source-specific attributes, holding only the keys that are set.
//!
//! Expressions have the CEL standard library and the strings extension, and
//! are checked at start-up ([`check_references`]) so that a typo in a
//! variable or attribute name stops the process instead of silently yielding
//! nothing.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;

use cel::common::ast::{operators, EntryExpr, Expr, IdedExpr, LiteralValue, SelectExpr};
use cel::common::types::{CelMap, CelMapKey, CelString};
use cel::common::value::Val;
use cel::{Env, ExecutionError, ParseErrors};
use hrsync_domain::{Attribute, WorkerAttributes};

/// The standard attributes of `person`: the domain's list
/// ([`Attribute::STANDARD_NAMES`]).
pub const PERSON_ATTRIBUTES: [&str; Attribute::STANDARD.len()] = Attribute::STANDARD_NAMES;

/// The map of source-specific attributes inside `person`.
pub const CUSTOM: &str = "custom";

/// A CEL string borrowing `value`.
pub fn string<'a>(value: &'a str) -> Box<dyn Val + 'a> {
    Box::new(CelString::from(value))
}

/// The standard attributes' values, in the order of [`PERSON_ATTRIBUTES`];
/// an unset one is `""`.
pub fn attribute_values(attributes: &WorkerAttributes) -> [&str; PERSON_ATTRIBUTES.len()] {
    Attribute::STANDARD.map(|a| attributes.text(&a).unwrap_or(""))
}

/// The `person` map; unset attributes are `""`.
pub fn person(attributes: &WorkerAttributes) -> CelMap<'_> {
    let values = attribute_values(attributes);
    let mut map: HashMap<CelMapKey<'_>, Box<dyn Val + '_>> =
        HashMap::with_capacity(values.len() + 1);
    map.extend(
        PERSON_ATTRIBUTES
            .iter()
            .zip(values)
            .map(|(&key, value)| (CelMapKey::from(key), string(value))),
    );
    let custom: HashMap<CelMapKey<'_>, Box<dyn Val + '_>> = attributes
        .custom
        .iter()
        .map(|(key, value)| (CelMapKey::from(key.as_str()), string(value)))
        .collect();
    map.insert(CelMapKey::from(CUSTOM), Box::new(CelMap::from(custom)));
    CelMap::from(map)
}

/// The CEL environment of every expression: the standard library and the
/// strings extension.
pub fn env() -> Env {
    let mut env = Env::stdlib();
    env.add_extension(cel::extensions::strings)
        .expect("the strings extension does not clash with the standard library");
    env
}

/// The parse errors on one line, `line:column: message` each.
pub fn parse_reason(errors: &ParseErrors) -> String {
    let details: Vec<String> = errors
        .errors
        .iter()
        .map(|error| format!("{}:{}: {}", error.pos.0, error.pos.1, error.msg))
        .collect();
    format!("the rule is not valid CEL: {}", details.join("; "))
}

/// Checks that `expr` reads only `variables`, the variables its macros bind
/// and type names, and only standard attributes of `person`.
///
/// # Errors
/// A [`ReferenceError`] naming the first unknown variable or `person`
/// attribute.
pub fn check_references(
    expr: &IdedExpr,
    env: &Env,
    variables: &[&str],
) -> Result<(), ReferenceError> {
    visit(expr, &mut Vec::new(), &mut |node, bound| match &node.expr {
        Expr::Ident(name) => {
            let known = variables.contains(&name.as_str())
                || bound.contains(&name.as_str())
                // Macros name their accumulators `@result` and the like.
                || name.starts_with('@')
                // Type names, as in `type(x) == string`.
                || env.types().find_type(name).is_some();
            if known {
                Ok(())
            } else {
                Err(ReferenceError::UnknownVariable {
                    name: name.clone(),
                    known: variables.iter().map(|v| (*v).to_owned()).collect(),
                })
            }
        }
        Expr::Select(select) => match person_field(select, bound) {
            Some(field) if field != CUSTOM && !PERSON_ATTRIBUTES.contains(&field) => {
                Err(ReferenceError::UnknownAttribute {
                    field: field.to_owned(),
                })
            }
            _ => Ok(()),
        },
        _ => Ok(()),
    })
}

/// An expression reads something that does not exist: a typo in the
/// configuration, caught at start-up. The message names it and lists what
/// exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// A variable the expression's context does not have.
    #[error("unknown variable `{name}`; an expression here can read {}", .known.join(", "))]
    UnknownVariable {
        /// The variable read.
        name: String,
        /// The variables the context has.
        known: Vec<String>,
    },
    /// A `person.<field>` that is neither a standard attribute nor `custom`.
    #[error(
        "unknown attribute `person.{field}`; person has {} and custom",
        PERSON_ATTRIBUTES.join(", ")
    )]
    UnknownAttribute {
        /// The field read.
        field: String,
    },
}

/// The message, for callers that keep configuration errors as text.
impl From<ReferenceError> for String {
    fn from(error: ReferenceError) -> Self {
        error.to_string()
    }
}

/// What an expression reads of its variables: found in its syntax tree, so
/// it holds for every evaluation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    /// The names it reads that no macro of its own binds: variables, and
    /// type names as in `type(x) == string`.
    pub names: BTreeSet<String>,
    /// The fields of `person` it reads as `person.<field>` (or
    /// `has(person.<field>)`): standard attributes, and `custom`.
    pub person_fields: BTreeSet<String>,
    /// Whether it also reads `person` other than through one of its fields
    /// (`size(person)`, `person.exists(...)`, `person[key]`), so that any
    /// attribute may decide its value.
    pub whole_person: bool,
    /// The keys of `person.custom` it reads by a name written in it:
    /// `person.custom.badge`, `has(person.custom.badge)`,
    /// `person.custom["badge"]` and `"badge" in person.custom`.
    pub custom_keys: BTreeSet<String>,
    /// Whether it reads `person.custom` other than by such a key
    /// (`size(person.custom)`, `person.custom[k]` with a computed `k`,
    /// `person.custom.exists(...)`), or `person` as a whole, so that any
    /// key may decide its value.
    pub whole_custom: bool,
}

/// What `expr` reads; see [`References`].
pub fn references(expr: &IdedExpr) -> References {
    let mut references = References::default();
    // Every `person.<field>` holds one `person`: more uses of `person` than
    // fields read means it is also read as a whole.
    let mut person_uses = 0_usize;
    let mut person_selects = 0_usize;
    // Likewise every keyed read of `person.custom` holds one `person.custom`.
    let mut custom_uses = 0_usize;
    let mut custom_keyed = 0_usize;
    let Ok(()) = visit::<Infallible>(expr, &mut Vec::new(), &mut |node, bound| {
        if let Some(key) = custom_key(node, bound) {
            custom_keyed += 1;
            references.custom_keys.insert(key.to_owned());
        }
        match &node.expr {
            Expr::Ident(name) if !name.starts_with('@') && !bound.contains(&name.as_str()) => {
                person_uses += usize::from(name == "person");
                references.names.insert(name.clone());
            }
            Expr::Select(select) => {
                if let Some(field) = person_field(select, bound) {
                    person_selects += 1;
                    custom_uses += usize::from(is_custom(node, bound));
                    references.person_fields.insert(field.to_owned());
                }
            }
            _ => {}
        }
        Ok(())
    });
    references.whole_person = person_uses > person_selects;
    references.whole_custom = references.whole_person || custom_uses > custom_keyed;
    references
}

/// Whether `expr` is `person.custom` (the variable `person`, not a
/// macro's binding of that name).
fn is_custom(expr: &IdedExpr, bound: &[&str]) -> bool {
    matches!(&expr.expr, Expr::Select(select)
        if !select.test && person_field(select, bound) == Some(CUSTOM))
}

/// The key of `person.custom` that `expr` reads by name, if it is one of
/// `person.custom.<key>`, `has(person.custom.<key>)`,
/// `person.custom["<key>"]` or `"<key>" in person.custom`.
fn custom_key<'e>(expr: &'e IdedExpr, bound: &[&str]) -> Option<&'e str> {
    let literal = |arg: &'e IdedExpr| match &arg.expr {
        Expr::Literal(LiteralValue::String(key)) => Some(key.inner()),
        _ => None,
    };
    match &expr.expr {
        Expr::Select(select) if is_custom(&select.operand, bound) => Some(select.field.as_str()),
        Expr::Call(call) if call.target.is_none() && call.args.len() == 2 => {
            let (map, key) = match call.func_name.as_str() {
                operators::INDEX => (&call.args[0], &call.args[1]),
                operators::IN => (&call.args[1], &call.args[0]),
                _ => return None,
            };
            literal(key).filter(|_| is_custom(map, bound))
        }
        _ => None,
    }
}

/// The field `select` reads of the variable `person`, if its operand is that
/// variable (and not a macro's binding of the same name).
fn person_field<'e>(select: &'e SelectExpr, bound: &[&str]) -> Option<&'e str> {
    match &select.operand.expr {
        Expr::Ident(name) if name == "person" && !bound.contains(&"person") => {
            Some(select.field.as_str())
        }
        _ => None,
    }
}

/// Calls `on_node` for `expr` and then, depth first, for every expression
/// inside it, each with the names the comprehensions around it bind; stops
/// at the first error.
fn visit<'e, E>(
    expr: &'e IdedExpr,
    bound: &mut Vec<&'e str>,
    on_node: &mut impl FnMut(&'e IdedExpr, &[&'e str]) -> Result<(), E>,
) -> Result<(), E> {
    on_node(expr, bound)?;
    match &expr.expr {
        Expr::Select(select) => visit(&select.operand, bound, on_node),
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                visit(target, bound, on_node)?;
            }
            call.args
                .iter()
                .try_for_each(|arg| visit(arg, bound, on_node))
        }
        Expr::Comprehension(comprehension) => {
            visit(&comprehension.iter_range, bound, on_node)?;
            visit(&comprehension.accu_init, bound, on_node)?;
            let depth = bound.len();
            bound.push(&comprehension.accu_var);
            visit(&comprehension.result, bound, on_node)?;
            bound.push(&comprehension.iter_var);
            if let Some(second) = &comprehension.iter_var2 {
                bound.push(second);
            }
            visit(&comprehension.loop_cond, bound, on_node)?;
            visit(&comprehension.loop_step, bound, on_node)?;
            bound.truncate(depth);
            Ok(())
        }
        Expr::List(list) => list
            .elements
            .iter()
            .try_for_each(|element| visit(element, bound, on_node)),
        Expr::Map(map) => map
            .entries
            .iter()
            .try_for_each(|entry| visit_entry(&entry.expr, bound, on_node)),
        Expr::Struct(structure) => structure
            .entries
            .iter()
            .try_for_each(|entry| visit_entry(&entry.expr, bound, on_node)),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Ok(()),
    }
}

/// [`visit`] for a map or struct literal entry.
fn visit_entry<'e, E>(
    entry: &'e EntryExpr,
    bound: &mut Vec<&'e str>,
    on_node: &mut impl FnMut(&'e IdedExpr, &[&'e str]) -> Result<(), E>,
) -> Result<(), E> {
    match entry {
        EntryExpr::MapEntry(entry) => {
            visit(&entry.key, bound, on_node)?;
            visit(&entry.value, bound, on_node)
        }
        EntryExpr::StructField(field) => visit(&field.value, bound, on_node),
    }
}

/// Why an evaluation failed, naming the kind of failure and the types
/// involved but never a value: values are a person's data, and these reasons
/// reach logs and reports.
pub fn describe_failure(error: &ExecutionError) -> String {
    match error {
        ExecutionError::InvalidArgumentCount { expected, actual } => {
            format!("a function got {actual} arguments, not {expected}")
        }
        ExecutionError::UnsupportedTargetType { target } => {
            format!("a function cannot be applied to a {}", target.type_of())
        }
        ExecutionError::NotSupportedAsMethod { method, target } => {
            format!("{method}() is not a method of {}", target.type_of())
        }
        ExecutionError::UnexpectedType { got, want } => {
            format!("got a {got} where a {want} is needed")
        }
        // Keys are names written in the expression (`person.custom["badge"]`).
        ExecutionError::NoSuchKey(key) => {
            format!("a map has no key {key:?} (test for it with `in` or `has()` first)")
        }
        ExecutionError::UndeclaredReference(name) => format!("{name} is not declared"),
        ExecutionError::ValuesNotComparable(a, b) => {
            format!(
                "a {} cannot be compared with a {}",
                a.type_of(),
                b.type_of()
            )
        }
        ExecutionError::UnsupportedBinaryOperator(op, a, b) => format!(
            "operator {op} does not apply to a {} and a {}",
            a.type_of(),
            b.type_of()
        ),
        ExecutionError::UnsupportedIndex(index, target) => format!(
            "a {} cannot be indexed by a {}",
            target.type_of(),
            index.type_of()
        ),
        ExecutionError::FunctionError { function, .. } => format!("{function}() failed"),
        ExecutionError::DivisionByZero(_) | ExecutionError::RemainderByZero(_) => {
            "division by zero".to_owned()
        }
        ExecutionError::Overflow(op, _, _) => format!("operator {op} overflowed"),
        ExecutionError::IndexOutOfBounds(_) => "a list index is out of bounds".to_owned(),
        _ => "the expression could not be evaluated".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cel::Context;
    use hrsync_domain::{EmploymentType, WorkerAttributes};

    use super::*;

    #[test]
    fn failures_name_types_never_values() {
        let env = Arc::new(env());
        let mut attributes = WorkerAttributes::new("Lucy", "Secretname", EmploymentType::Employee);
        attributes.title = Some("Agent".into());
        for expression in [
            "person.given_name / 2",
            "person.given_name < 3",
            r#"person.custom["x"]"#,
            "person.family_name.matches('[')",
            "[person.title][5]",
            "int(person.title)",
        ] {
            let program = env.compile(expression).expect(expression);
            let mut context = Context::with_env(Arc::clone(&env));
            context.add_variable_as_val("person", Box::new(person(&attributes)));
            let error = program.execute(&context).expect_err(expression);
            let reason = describe_failure(&error);
            for value in ["Lucy", "Secretname", "Agent"] {
                assert!(!reason.contains(value), "{expression}: {reason}");
            }
            assert!(!reason.is_empty());
        }
    }

    /// `person` has every attribute of the domain's list, holding its value
    /// (the list is `standard_attributes!` in `hrsync-domain`).
    #[test]
    fn person_has_every_standard_attribute() {
        use hrsync_domain::{AttributeType, AttributeValue};

        let mut attributes = WorkerAttributes::new("Lucy", "Lee", EmploymentType::Intern);
        for (i, attribute) in Attribute::STANDARD.iter().enumerate() {
            if attribute.value_type() == AttributeType::OptionalText {
                let value = AttributeValue::Text(Some(format!("E{i}")));
                attributes.set(attribute, value).unwrap();
            }
        }
        let env = Arc::new(env());
        let mut context = Context::with_env(Arc::clone(&env));
        context.add_variable_as_val("person", Box::new(person(&attributes)));
        for attribute in &Attribute::STANDARD {
            let expected = attributes.text(attribute).unwrap();
            let expression = format!("person.{attribute} == {expected:?}");
            let program = env.compile(&expression).expect("compiles");
            check_references(program.expression(), &env, &["person"])
                .unwrap_or_else(|e| panic!("{expression}: {e}"));
            assert_eq!(
                program.execute(&context).expect(&expression),
                cel::Value::Bool(true),
                "{expression}"
            );
        }
        assert_eq!(
            attribute_values(&attributes).to_vec(),
            Attribute::STANDARD
                .iter()
                .map(|a| attributes.text(a).unwrap())
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn unknown_attributes_and_variables_are_named() {
        let env = env();
        let program = env.compile("person.favourite_colour").unwrap();
        let error = check_references(program.expression(), &env, &["person"]).unwrap_err();
        assert!(matches!(
            &error,
            ReferenceError::UnknownAttribute { field } if field == "favourite_colour"
        ));
        assert!(error.to_string().contains("person has given_name"));
        let program = env.compile("employee.title").unwrap();
        let error = check_references(program.expression(), &env, &["person"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown variable `employee`; an expression here can read person"
        );
    }

    fn references_of(expression: &str) -> References {
        let program = env().compile(expression).expect(expression);
        references(program.expression())
    }

    fn keys(references: &References) -> Vec<&str> {
        references.custom_keys.iter().map(String::as_str).collect()
    }

    #[test]
    fn custom_keys_read_by_name_are_found() {
        for (expression, expected) in [
            ("person.custom.badge == 'B-1'", vec!["badge"]),
            ("has(person.custom.badge)", vec!["badge"]),
            (r#"person.custom["badge"].startsWith("B-")"#, vec!["badge"]),
            (
                r#""badge" in person.custom && person.custom.floor == "2""#,
                vec!["badge", "floor"],
            ),
        ] {
            let read = references_of(expression);
            assert_eq!(keys(&read), expected, "{expression}");
            assert!(!read.whole_custom, "{expression}");
            assert!(!read.whole_person, "{expression}");
            assert!(read.person_fields.contains(CUSTOM), "{expression}");
        }
    }

    #[test]
    fn custom_read_otherwise_is_read_whole() {
        for expression in [
            "size(person.custom) > 0",
            "person.custom.exists(k, k.startsWith('b'))",
            "person.custom[person.title] == 'x'",
            "person.custom.badge == 'x' || size(person.custom) == 0",
            "size(person) > 0",
        ] {
            let read = references_of(expression);
            assert!(read.whole_custom, "{expression}");
        }
        // A macro's own `person` is not the variable.
        let read = references_of("[{'custom': {'a': 'b'}}].exists(person, person.custom.a == 'b')");
        assert!(read.custom_keys.is_empty() && !read.whole_custom);
        // No custom read at all.
        let read = references_of("person.department == 'Sales' && is_manager");
        assert!(read.custom_keys.is_empty() && !read.whole_custom);
    }
}
