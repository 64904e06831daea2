//! Layered configuration for every hrsync process.
//!
//! One typed config per process is assembled from three layers, later layers
//! winning: the type's `Default`, an optional TOML file, then environment
//! variables named `HRSYNC_<SECTION>__<KEY>` (double underscore separates
//! nesting levels, e.g. `HRSYNC_KAFKA__BROKERS`). Unknown keys in any layer are
//! rejected with the key and the layer named, so a typo never silently falls
//! back to a default.
//!
//! Secrets (passwords, tokens) are held in [`Secret`], which never prints its
//! value in `Debug` or `Display` and is only readable through
//! [`Secret::expose`].

pub mod failpoint;
mod secret;

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use failpoint::failpoint;
pub use secret::{Secret, SecretError};

/// Prefix of the environment variables read by [`load`].
pub const ENV_PREFIX: &str = "HRSYNC_";

/// Why a configuration could not be loaded. Always the operator's to fix;
/// retrying without changing the config cannot help.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config file named on the command line does not exist.
    #[error("config file {path} does not exist")]
    MissingFile {
        /// The path as given.
        path: PathBuf,
    },
    /// A layer holds an unknown key, a value of the wrong type, or misses a
    /// required key. The message names the key and the layer it came from.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The values parse, but contradict each other (checked by the caller's
    /// [`Validate`] implementation).
    #[error("invalid configuration: {0}")]
    Inconsistent(Inconsistency),
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a configuration is not usable as a whole: the error of the section
/// that found it, whose message names the offending keys.
pub type Inconsistency = Box<dyn std::error::Error + Send + Sync>;

/// Cross-field checks that run once the layers are merged.
pub trait Validate {
    /// Returns an error naming the offending keys when the config is not
    /// usable as a whole.
    fn validate(&self) -> Result<(), Inconsistency>;
}

/// Loads `T` from its defaults, then `file` (if any), then `HRSYNC_*`
/// environment variables, and runs its [`Validate`] checks.
pub fn load<T>(file: Option<&Path>) -> Result<T>
where
    T: Serialize + DeserializeOwned + Default + Validate,
{
    load_from(file, Env::prefixed(ENV_PREFIX).split("__"))
}

/// Like [`load`] with an explicit environment provider; lets tests avoid the
/// process environment.
pub fn load_from<T>(file: Option<&Path>, env: Env) -> Result<T>
where
    T: Serialize + DeserializeOwned + Default + Validate,
{
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = file {
        if !path.exists() {
            return Err(Error::MissingFile {
                path: path.to_path_buf(),
            });
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    let figment = figment.merge(env);
    let config: T = figment.extract().map_err(describe)?;
    config.validate().map_err(Error::Inconsistent)?;
    Ok(config)
}

/// Renders a figment error as one line per problem, each naming the key path
/// and the layer (file or environment variable) it came from. Values are
/// never included: they might be secrets.
fn describe(error: figment::Error) -> Error {
    let lines: Vec<String> = error
        .into_iter()
        .map(|e| {
            let key = if e.path.is_empty() {
                String::from("<root>")
            } else {
                e.path.join(".")
            };
            let origin = e
                .metadata
                .as_ref()
                .map(|m| match &m.source {
                    Some(source) => format!(" (from {source})"),
                    None => format!(" (from {})", m.name),
                })
                .unwrap_or_default();
            format!("key `{key}`{origin}: {}", kind_message(&e.kind))
        })
        .collect();
    Error::Invalid(lines.join("; "))
}

/// The reason part of a figment error, without echoing the offending value.
fn kind_message(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    match kind {
        Kind::UnknownField(field, expected) => {
            format!(
                "unknown key `{field}`, expected one of {}",
                expected_list(expected)
            )
        }
        Kind::MissingField(field) => format!("missing required key `{field}`"),
        Kind::InvalidType(actual, expected) => {
            format!(
                "wrong type: found {}, expected {expected}",
                actual_kind(actual)
            )
        }
        Kind::InvalidValue(_, expected) => format!("invalid value, expected {expected}"),
        Kind::UnknownVariant(variant, expected) => {
            format!(
                "unknown value `{variant}`, expected one of {}",
                expected_list(expected)
            )
        }
        Kind::InvalidLength(len, expected) => format!("length {len}, expected {expected}"),
        Kind::DuplicateField(field) => format!("key `{field}` given twice"),
        other => other.to_string(),
    }
}

fn expected_list(expected: &[&str]) -> String {
    expected
        .iter()
        .map(|e| format!("`{e}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Names the kind of a value found without printing it.
fn actual_kind(actual: &figment::error::Actual) -> &'static str {
    use figment::error::Actual;
    match actual {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
        Actual::Float(_) => "a float",
        Actual::Char(_) | Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Unit => "nothing",
        Actual::Option => "an option",
        Actual::NewtypeStruct => "a newtype",
        Actual::Seq => "a list",
        Actual::Map => "a table",
        Actual::Enum => "an enum",
        Actual::UnitVariant => "a unit variant",
        Actual::NewtypeVariant => "a newtype variant",
        Actual::TupleVariant => "a tuple variant",
        Actual::StructVariant => "a struct variant",
        Actual::Other(_) => "a value",
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature is fixed by figment
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::io::Write;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Sample {
        name: String,
        inner: Inner,
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        port: u16,
        password: Option<Secret>,
    }

    impl Default for Sample {
        fn default() -> Self {
            Sample {
                name: "default".into(),
                inner: Inner::default(),
            }
        }
    }

    impl Default for Inner {
        fn default() -> Self {
            Inner {
                port: 1,
                password: None,
            }
        }
    }

    impl Validate for Sample {
        fn validate(&self) -> Result<(), Inconsistency> {
            if self.inner.port == 0 {
                return Err("inner.port must not be 0".into());
            }
            Ok(())
        }
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    fn no_env() -> Env {
        Env::prefixed("HRSYNC_CONFIG_UNIT_TEST_NEVER_SET_")
    }

    #[test]
    fn layers_apply_in_order() {
        let f = file("name = \"from-file\"\n[inner]\nport = 7\n");
        figment::Jail::expect_with(|jail| {
            jail.set_env("HRSYNCT_INNER__PORT", "9");
            let cfg: Sample =
                load_from(Some(f.path()), Env::prefixed("HRSYNCT_").split("__")).expect("load");
            assert_eq!(cfg.name, "from-file");
            assert_eq!(cfg.inner.port, 9, "env overrides the file");
            Ok(())
        });
        let cfg: Sample = load_from(None, no_env()).expect("defaults");
        assert_eq!(cfg, Sample::default());
    }

    #[test]
    fn unknown_key_in_file_is_named() {
        let f = file("[inner]\nprot = 7\n");
        let err = load_from::<Sample>(Some(f.path()), no_env()).expect_err("must reject");
        let msg = err.to_string();
        assert!(msg.contains("prot"), "{msg}");
        assert!(msg.contains(&f.path().display().to_string()), "{msg}");
    }

    #[test]
    fn unknown_env_key_is_named() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("HRSYNCT_INNER__PROT", "9");
            let err = load_from::<Sample>(None, Env::prefixed("HRSYNCT_").split("__"))
                .expect_err("must reject");
            let msg = err.to_string();
            assert!(msg.contains("prot"), "{msg}");
            Ok(())
        });
    }

    #[test]
    fn wrong_type_does_not_echo_the_value() {
        let f = file("[inner]\nport = \"hunter2\"\n");
        let msg = load_from::<Sample>(Some(f.path()), no_env())
            .expect_err("must reject")
            .to_string();
        assert!(msg.contains("inner.port"), "{msg}");
        assert!(!msg.contains("hunter2"), "value leaked: {msg}");
    }

    #[test]
    fn cross_field_check_runs() {
        let f = file("[inner]\nport = 0\n");
        let err = load_from::<Sample>(Some(f.path()), no_env()).expect_err("must reject");
        assert!(matches!(err, Error::Inconsistent(_)), "{err}");
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = load_from::<Sample>(Some(Path::new("/nonexistent/hrsync.toml")), no_env())
            .expect_err("must reject");
        assert!(err.to_string().contains("/nonexistent/hrsync.toml"));
    }

    #[test]
    fn secrets_never_print() {
        let f = file("[inner]\npassword = \"s3cr3t-value\"\n");
        let cfg: Sample = load_from(Some(f.path()), no_env()).expect("load");
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        let password = cfg.inner.password.expect("set");
        assert_eq!(password.expose().expect("readable"), "s3cr3t-value");
    }
}
