//! Key pairs for tests of `private_key_jwt` client authentication, made
//! fresh by the `openssl` command line tool (so no private key lives in the
//! repository).

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

/// A freshly generated key pair, both halves PEM.
#[derive(Clone)]
pub struct KeyPair {
    /// The private key, PKCS#8 (`-----BEGIN PRIVATE KEY-----`).
    pub private_pem: String,
    /// The public key, SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`).
    pub public_pem: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public_pem", &self.public_pem)
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A 2048-bit RSA key pair.
    pub fn rsa() -> anyhow::Result<Self> {
        Self::generate(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
    }

    /// An EC key pair on P-256.
    pub fn p256() -> anyhow::Result<Self> {
        Self::generate(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])
    }

    /// An EC key pair on P-384.
    pub fn p384() -> anyhow::Result<Self> {
        Self::generate(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"])
    }

    fn generate(args: &[&str]) -> anyhow::Result<Self> {
        let private_pem = openssl(&[&["genpkey"], args].concat(), None)?;
        let public_pem = openssl(&["pkey", "-pubout"], Some(&private_pem))?;
        Ok(KeyPair {
            private_pem,
            public_pem,
        })
    }

    /// The private key of an RSA pair as PKCS#1 (`RSA PRIVATE KEY`), as
    /// older tools write it.
    pub fn rsa_private_pem_pkcs1(&self) -> anyhow::Result<String> {
        openssl(&["rsa", "-traditional"], Some(&self.private_pem))
    }

    /// The private key of an EC pair as SEC1 (`EC PRIVATE KEY`), as `openssl
    /// ecparam -genkey` writes it.
    pub fn ec_private_pem_sec1(&self) -> anyhow::Result<String> {
        openssl(&["ec"], Some(&self.private_pem))
    }
}

/// Runs `openssl ARGS` with `input` on stdin; its stdout.
fn openssl(args: &[&str], input: Option<&str>) -> anyhow::Result<String> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running `openssl` (install it: Debian's `openssl` package)")?;
    let mut stdin = child.stdin.take().context("openssl's stdin")?;
    stdin.write_all(input.unwrap_or_default().as_bytes())?;
    drop(stdin);
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}
