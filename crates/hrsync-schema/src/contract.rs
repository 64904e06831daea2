//! The embedded contracts and every released version of them.

use std::collections::HashMap;
use std::fmt;
use std::sync::{LazyLock, Mutex};

use apache_avro::headers::HeaderBuilder;
use apache_avro::{GenericSingleObjectReader, GenericSingleObjectWriter, Schema};

use crate::canonical;
use crate::error::SchemaError;
use crate::resolve::Names;

/// One topic's contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Contract {
    /// `hr.lifecycle.v1`: [`hrsync_domain::LifecycleEvent`].
    Lifecycle,
    /// `directory.changes.v1` (and its priority lane):
    /// [`hrsync_domain::DirectoryChange`].
    DirectoryChanges,
    /// `provisioning.audit.v1`: [`hrsync_domain::ProvisioningAudit`].
    Audit,
}

impl Contract {
    /// Every contract.
    pub const ALL: [Contract; 3] = [Self::Lifecycle, Self::DirectoryChanges, Self::Audit];

    /// The default topic name, which is also the schema file's stem.
    pub fn topic(&self) -> &'static str {
        match self {
            Self::Lifecycle => "hr.lifecycle.v1",
            Self::DirectoryChanges => "directory.changes.v1",
            Self::Audit => "provisioning.audit.v1",
        }
    }

    /// The schema file name under `schemas/`.
    pub fn file_name(&self) -> &'static str {
        self.schema_file().name
    }

    /// The full name of the top-level record.
    pub fn record_name(&self) -> &'static str {
        match self {
            Self::Lifecycle => "hrsync.v1.LifecycleEvent",
            Self::DirectoryChanges => "hrsync.v1.DirectoryChange",
            Self::Audit => "hrsync.v1.ProvisioningAudit",
        }
    }

    /// The embedded files of this contract.
    pub fn schema_file(&self) -> &'static SchemaFile {
        &SCHEMA_FILES[*self as usize]
    }

    /// The CRC-64-AVRO fingerprint of the current schema: what
    /// [`crate::encode_lifecycle`] and friends put in the header.
    ///
    /// # Errors
    /// [`SchemaError`] if the embedded schema is broken (a build bug).
    pub fn fingerprint(&self) -> Result<u64, SchemaError> {
        Ok(registry()?.get(*self).current().fingerprint)
    }

    /// The parsed current schema, the reader schema of every decode.
    ///
    /// # Errors
    /// [`SchemaError`] if the embedded schema is broken (a build bug).
    pub fn schema(&self) -> Result<&'static Schema, SchemaError> {
        Ok(&registry()?.get(*self).current().schema)
    }
}

impl fmt::Display for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.topic())
    }
}

/// A released version of a schema, kept in `schemas/history/<topic>/`.
#[derive(Debug)]
pub struct HistoryFile {
    /// Version number (the file is `NNNN.avsc`).
    pub version: u32,
    /// Path relative to `schemas/`.
    pub path: &'static str,
    /// The schema JSON.
    pub text: &'static str,
}

/// A contract's schema file and its history, embedded at compile time.
#[derive(Debug)]
pub struct SchemaFile {
    /// The contract.
    pub contract: Contract,
    /// File name under `schemas/`.
    pub name: &'static str,
    /// The current schema JSON: the writer schema of every encode and the
    /// reader schema of every decode.
    pub current: &'static str,
    /// Every released version, oldest first.
    pub history: &'static [HistoryFile],
}

macro_rules! history {
    ($topic:literal, [$($version:literal => $file:literal),+ $(,)?]) => {
        &[$(HistoryFile {
            version: $version,
            path: concat!("history/", $topic, "/", $file),
            text: include_str!(concat!("../../../schemas/history/", $topic, "/", $file)),
        }),+]
    };
}

/// The embedded contracts, in [`Contract`] order. When a schema changes, add
/// its new history file here (see `schemas/README.md`).
static SCHEMA_FILES: [SchemaFile; 3] = [
    SchemaFile {
        contract: Contract::Lifecycle,
        name: "hr.lifecycle.v1.avsc",
        current: include_str!("../../../schemas/hr.lifecycle.v1.avsc"),
        history: history!("hr.lifecycle.v1", [1 => "0001.avsc"]),
    },
    SchemaFile {
        contract: Contract::DirectoryChanges,
        name: "directory.changes.v1.avsc",
        current: include_str!("../../../schemas/directory.changes.v1.avsc"),
        history: history!("directory.changes.v1", [1 => "0001.avsc"]),
    },
    SchemaFile {
        contract: Contract::Audit,
        name: "provisioning.audit.v1.avsc",
        current: include_str!("../../../schemas/provisioning.audit.v1.avsc"),
        history: history!(
            "provisioning.audit.v1",
            [1 => "0001.avsc", 2 => "0002.avsc"]
        ),
    },
];

/// Every contract's schema files, for tooling (schema export, compatibility
/// checks, docs).
pub fn schemas() -> &'static [SchemaFile] {
    &SCHEMA_FILES
}

/// The CRC-64-AVRO fingerprint of a contract's current schema.
///
/// # Errors
/// [`SchemaError`] if the embedded schema is broken (a build bug).
pub fn fingerprint(contract: Contract) -> Result<u64, SchemaError> {
    contract.fingerprint()
}

/// One parsed schema version.
pub(crate) struct Version {
    /// Where it came from, for messages.
    pub(crate) path: &'static str,
    pub(crate) fingerprint: u64,
    pub(crate) schema: Schema,
    pub(crate) names: Names,
    /// Decodes data written with this schema. It holds the schema with its
    /// named types resolved once: `apache_avro::from_avro_datum` resolves
    /// them again on every call, which cost more than the decoding itself.
    pub(crate) reader: GenericSingleObjectReader,
    /// Encodes with this schema, resolved once (as `reader`). Its buffer
    /// makes it `&mut`; an encode holds the lock for microseconds.
    pub(crate) writer: Mutex<GenericSingleObjectWriter>,
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Version")
            .field("path", &self.path)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// hrsync's single-object header (see [`crate::framing`]) for apache-avro's
/// reader and writer, with the fingerprint of the schema file's canonical
/// form.
struct Header(u64);

impl HeaderBuilder for Header {
    fn build_header(&self) -> Vec<u8> {
        let mut header = Vec::with_capacity(crate::framing::HEADER_LEN);
        crate::framing::write_header(self.0, &mut header);
        header
    }
}

fn new_writer(
    schema: &Schema,
    fingerprint: u64,
) -> apache_avro::AvroResult<GenericSingleObjectWriter> {
    GenericSingleObjectWriter::new_with_capacity_and_header_builder(
        schema,
        1024,
        Header(fingerprint),
    )
}

impl Version {
    /// A fresh writer, to replace one that failed mid-write (apache-avro
    /// leaves its buffer dirty then, and refuses every later write).
    pub(crate) fn new_writer(&self) -> apache_avro::AvroResult<GenericSingleObjectWriter> {
        new_writer(&self.schema, self.fingerprint)
    }

    fn parse(path: &'static str, text: &str) -> Result<Self, SchemaError> {
        let err = |reason: String| SchemaError { file: path, reason };
        let schema = Schema::parse_str(text).map_err(|e| err(e.to_string()))?;
        let fingerprint = canonical::fingerprint(text).map_err(|e| err(e.to_string()))?;
        let names = Names::collect(&schema);
        let reader =
            GenericSingleObjectReader::new_with_header_builder(schema.clone(), Header(fingerprint))
                .map_err(|e| err(e.to_string()))?;
        let writer = new_writer(&schema, fingerprint).map_err(|e| err(e.to_string()))?;
        Ok(Self {
            path,
            fingerprint,
            schema,
            names,
            reader,
            writer: Mutex::new(writer),
        })
    }
}

/// The parsed versions of one contract.
#[derive(Debug)]
pub(crate) struct ContractSchemas {
    /// Index 0 is the current schema; then the history, newest first, with
    /// versions whose fingerprint is already present left out (they differ
    /// only in docs or defaults, so they encode data identically).
    versions: Vec<Version>,
}

impl ContractSchemas {
    pub(crate) fn current(&self) -> &Version {
        &self.versions[0]
    }

    pub(crate) fn by_fingerprint(&self, fingerprint: u64) -> Option<&Version> {
        self.versions.iter().find(|v| v.fingerprint == fingerprint)
    }
}

#[derive(Debug)]
pub(crate) struct Registry {
    contracts: Vec<ContractSchemas>,
    owners: HashMap<u64, Contract>,
}

impl Registry {
    fn build() -> Result<Self, SchemaError> {
        let mut contracts = Vec::new();
        let mut owners = HashMap::new();
        for file in &SCHEMA_FILES {
            let mut versions = vec![Version::parse(file.name, file.current)?];
            for h in file.history.iter().rev() {
                let v = Version::parse(h.path, h.text)?;
                if versions
                    .iter()
                    .all(|known| known.fingerprint != v.fingerprint)
                {
                    versions.push(v);
                }
            }
            for v in &versions {
                if let Some(other) = owners.insert(v.fingerprint, file.contract) {
                    if other != file.contract {
                        return Err(SchemaError {
                            file: v.path,
                            reason: format!("same fingerprint as a {other} schema"),
                        });
                    }
                }
            }
            contracts.push(ContractSchemas { versions });
        }
        Ok(Self { contracts, owners })
    }

    pub(crate) fn get(&self, contract: Contract) -> &ContractSchemas {
        &self.contracts[contract as usize]
    }

    /// The contract whose schemas include `fingerprint`.
    pub(crate) fn owner(&self, fingerprint: u64) -> Option<Contract> {
        self.owners.get(&fingerprint).copied()
    }
}

static REGISTRY: LazyLock<Result<Registry, SchemaError>> = LazyLock::new(Registry::build);

/// The parsed schemas, built once.
pub(crate) fn registry() -> Result<&'static Registry, SchemaError> {
    REGISTRY.as_ref().map_err(Clone::clone)
}
