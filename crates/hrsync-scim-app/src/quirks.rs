//! Quirk modes: switchable departures from RFC 7644 that real SCIM apps
//! make, so that hrsync can be tested against them. Each is off by default,
//! and the app is conformant with none switched on.

use std::fmt;
use std::str::FromStr;

/// One way the app can bend the RFC, as real apps do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Quirk {
    /// `case-sensitive-filter`: string comparisons in filters
    /// (`userName eq "…"`) are case-sensitive, while a create or rename
    /// onto a `userName` another user holds in another case is still
    /// refused (409 `uniqueness`).
    CaseSensitiveFilter,
    /// `unique-group-names`: a group `displayName` another group holds,
    /// compared ignoring case, is refused (409 `uniqueness`) on create,
    /// replace and PATCH. RFC 7643 gives `displayName` no uniqueness, so by
    /// default the app creates a second group of the same name.
    UniqueGroupNames,
    /// `read-change-write-patch`: a PATCH reads the resource, waits
    /// [`Options::patch_delay`](crate::Options::patch_delay), then writes
    /// the whole changed resource back over whatever is there then, so
    /// concurrent PATCHes to one resource lose each other's changes (last
    /// writer wins).
    ReadChangeWritePatch,
    /// `paging-restarts`: a list request whose `startIndex` is past the
    /// last result answers the first page again (with the true
    /// `totalResults` and the `startIndex` asked) instead of an empty page.
    PagingRestarts,
    /// `patch-204`: a PATCH answers 204 No Content without a body. By
    /// default it answers 200 with the whole resource.
    Patch204,
    /// `string-booleans`: booleans in returned resources (`active`,
    /// `primary`, …) are the strings `"True"` and `"False"`.
    StringBooleans,
    /// `no-location`: a create answers without a `Location` header.
    NoLocation,
    /// `no-schemas`: resources and list responses are returned without
    /// `schemas`.
    NoSchemas,
    /// `duplicate-user-names`: a `userName` another user already holds is
    /// accepted, as apps that do not enforce SCIM's `server` uniqueness do:
    /// a create applied twice then shows as a second account instead of a
    /// 409.
    DuplicateUserNames,
}

impl Quirk {
    /// Every quirk, in the order they are listed to users.
    pub const ALL: [Quirk; 9] = [
        Quirk::CaseSensitiveFilter,
        Quirk::UniqueGroupNames,
        Quirk::ReadChangeWritePatch,
        Quirk::PagingRestarts,
        Quirk::Patch204,
        Quirk::StringBooleans,
        Quirk::NoLocation,
        Quirk::NoSchemas,
        Quirk::DuplicateUserNames,
    ];

    /// The name it is switched on by (`--quirk NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Quirk::CaseSensitiveFilter => "case-sensitive-filter",
            Quirk::UniqueGroupNames => "unique-group-names",
            Quirk::ReadChangeWritePatch => "read-change-write-patch",
            Quirk::PagingRestarts => "paging-restarts",
            Quirk::Patch204 => "patch-204",
            Quirk::StringBooleans => "string-booleans",
            Quirk::NoLocation => "no-location",
            Quirk::NoSchemas => "no-schemas",
            Quirk::DuplicateUserNames => "duplicate-user-names",
        }
    }
}

impl fmt::Display for Quirk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no quirk's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown quirk {name:?}; the quirks are: {}", known())]
pub struct UnknownQuirk {
    /// The name given.
    pub name: String,
}

fn known() -> String {
    Quirk::ALL.map(Quirk::name).join(", ")
}

impl FromStr for Quirk {
    type Err = UnknownQuirk;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim();
        Quirk::ALL
            .into_iter()
            .find(|q| q.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| UnknownQuirk {
                name: name.to_owned(),
            })
    }
}

/// Replaces every boolean in `value` by the string `"True"` or `"False"`.
pub(crate) fn stringify_booleans(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Bool(b) => *value = Value::String(if *b { "True" } else { "False" }.to_owned()),
        Value::Array(items) => items.iter_mut().for_each(stringify_booleans),
        Value::Object(fields) => fields.values_mut().for_each(stringify_booleans),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_known() {
        for quirk in Quirk::ALL {
            assert_eq!(quirk.name().parse::<Quirk>(), Ok(quirk));
        }
        assert_eq!(" Patch-204 ".parse::<Quirk>(), Ok(Quirk::Patch204));
        let error = "sloppy".parse::<Quirk>().expect_err("unknown").to_string();
        assert!(error.contains("\"sloppy\""), "{error}");
        for quirk in Quirk::ALL {
            assert!(error.contains(quirk.name()), "{error}");
        }
    }

    #[test]
    fn stringifies_nested_booleans() {
        let mut value = serde_json::json!({"active": true, "emails": [{"primary": false}], "n": 1});
        stringify_booleans(&mut value);
        assert_eq!(
            value,
            serde_json::json!({"active": "True", "emails": [{"primary": "False"}], "n": 1})
        );
    }
}
