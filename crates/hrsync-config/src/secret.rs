//! Secrets that never print.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize, Serializer};

/// Where a secret's value comes from. In TOML a secret is either a plain
/// string, `{ env = "VAR" }` or `{ file = "/run/secrets/token" }`. Env and
/// file sources are read each time the value is used, so a rotated secret
/// file is picked up without a restart.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum SecretSource {
    /// The value itself (fine for development; prefer env or file).
    Inline(String),
    /// The name of an environment variable holding the value.
    Env {
        /// Variable name.
        env: String,
    },
    /// A file whose content (trailing newline trimmed) is the value.
    File {
        /// Path of the file.
        file: PathBuf,
    },
}

/// A secret value (password, token, client secret). `Debug`, `Display` and
/// serialization show `<redacted>` (or the env/file reference, which is not
/// itself secret), never the value.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(SecretSource);

/// A secret whose source could not be read. Names the variable or file, never
/// a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The named environment variable is unset or not UTF-8.
    #[error("secret environment variable {0} is not set")]
    MissingEnv(String),
    /// The named file could not be read.
    #[error("secret file {path} cannot be read: {source}")]
    File {
        /// Path of the file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
}

impl Secret {
    /// A secret held inline.
    pub fn inline(value: impl Into<String>) -> Self {
        Secret(SecretSource::Inline(value.into()))
    }

    /// A secret read from an environment variable when used.
    pub fn from_env(var: impl Into<String>) -> Self {
        Secret(SecretSource::Env { env: var.into() })
    }

    /// A secret read from a file when used.
    pub fn from_file(path: impl Into<PathBuf>) -> Self {
        Secret(SecretSource::File { file: path.into() })
    }

    /// The secret's value. Only pass it straight to the client that needs it;
    /// never log or format it.
    pub fn expose(&self) -> Result<String, SecretError> {
        match &self.0 {
            SecretSource::Inline(value) => Ok(value.clone()),
            SecretSource::Env { env } => {
                std::env::var(env).map_err(|_| SecretError::MissingEnv(env.clone()))
            }
            SecretSource::File { file } => std::fs::read_to_string(file)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|source| SecretError::File {
                    path: file.clone(),
                    source,
                }),
        }
    }

    fn describe(&self) -> String {
        match &self.0 {
            SecretSource::Inline(_) => "<redacted>".to_owned(),
            SecretSource::Env { env } => format!("<from env {env}>"),
            SecretSource::File { file } => format!("<from file {}>", file.display()),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct EnvRef<'a> {
            env: &'a str,
        }
        #[derive(Serialize)]
        struct FileRef<'a> {
            file: &'a std::path::Path,
        }
        match &self.0 {
            SecretSource::Inline(_) => serializer.serialize_str("<redacted>"),
            SecretSource::Env { env } => EnvRef { env }.serialize(serializer),
            SecretSource::File { file } => FileRef { file }.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn debug_display_and_serialize_hide_inline_value() {
        let s = Secret::inline("tok-123");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{s}"), "<redacted>");
        let json = figment::value::Value::serialize(&s).expect("serialize");
        assert_eq!(json.as_str(), Some("<redacted>"));
    }

    #[test]
    fn reads_file_and_trims_newline() {
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        writeln!(f, "from-file").expect("write");
        let s = Secret::from_file(f.path());
        assert_eq!(s.expose().expect("read"), "from-file");
        assert!(format!("{s:?}").contains("from file"));
    }

    #[test]
    fn missing_sources_are_named() {
        let err = Secret::from_env("HRSYNC_SECRET_TEST_UNSET_VAR")
            .expose()
            .expect_err("unset");
        assert!(err.to_string().contains("HRSYNC_SECRET_TEST_UNSET_VAR"));
        let err = Secret::from_file("/nonexistent/secret")
            .expose()
            .expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/secret"));
    }
}
