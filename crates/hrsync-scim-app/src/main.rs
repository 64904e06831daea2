//! `hrsync-scim-app`: serves the in-memory SCIM 2.0 app on an address.
//!
//! Prints `listening on ADDR` on stdout once it accepts connections (with
//! `--listen 127.0.0.1:0`, ADDR names the port picked). Logs go to stderr
//! (`RUST_LOG`, default `info`); the token is never logged.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use hrsync_scim_app::{
    router, AppState, ClientCredential, ClientPublicKey, OAuthClient, Options, Quirk,
};
use tracing_subscriber::EnvFilter;

/// Serve an in-memory SCIM 2.0 app (Users, Groups) behind a bearer token.
#[derive(Parser)]
#[command(name = "hrsync-scim-app", version, about)]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, env = "HRSYNC_SCIM_APP_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// The bearer token clients must present. Prefer --token-file or the
    /// environment: a command line is visible to every local user.
    #[arg(
        long,
        env = "HRSYNC_SCIM_APP_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    token: Option<String>,
    /// A file holding the bearer token (surrounding whitespace ignored).
    #[arg(long, env = "HRSYNC_SCIM_APP_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// The absolute URL clients reach the app at, for `Location` and
    /// `meta.location` (default: http:// and the request's Host).
    #[arg(long, env = "HRSYNC_SCIM_APP_BASE_URL")]
    base_url: Option<String>,
    /// The most resources one list response holds.
    #[arg(long, default_value_t = Options::default().max_results)]
    max_results: usize,
    /// The largest request body accepted, in bytes.
    #[arg(long, default_value_t = Options::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Also accept OAuth 2.0 access tokens issued by `POST /oauth/token`
    /// (client credentials grant) to this client id...
    #[arg(long, env = "HRSYNC_SCIM_APP_OAUTH_CLIENT_ID")]
    oauth_client_id: Option<String>,
    /// ... authenticated by this client secret ...
    #[arg(
        long,
        env = "HRSYNC_SCIM_APP_OAUTH_CLIENT_SECRET",
        hide_env_values = true,
        requires = "oauth_client_id",
        conflicts_with = "oauth_client_public_key_file"
    )]
    oauth_client_secret: Option<String>,
    /// ... or by JWTs signed with the private key of this PEM public key
    /// (`private_key_jwt`, RFC 7523).
    #[arg(
        long,
        env = "HRSYNC_SCIM_APP_OAUTH_CLIENT_PUBLIC_KEY_FILE",
        requires = "oauth_client_id"
    )]
    oauth_client_public_key_file: Option<PathBuf>,
    /// Lifetime of an issued access token, in seconds.
    #[arg(long, default_value_t = 3600)]
    oauth_token_lifetime_s: u64,
    /// Switch on quirk modes, departures from the RFC real apps make
    /// (repeat the flag or separate names by commas): case-sensitive-filter,
    /// unique-group-names, read-change-write-patch, paging-restarts,
    /// patch-204, string-booleans, no-location, no-schemas.
    #[arg(
        long = "quirk",
        visible_alias = "quirks",
        env = "HRSYNC_SCIM_APP_QUIRKS",
        value_name = "NAME",
        value_delimiter = ','
    )]
    quirks: Vec<Quirk>,
    /// How long a PATCH waits between reading and writing back the
    /// resource under the read-change-write-patch quirk, in milliseconds.
    #[arg(long, default_value_t = 100)]
    patch_delay_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let token = match (args.token, &args.token_file) {
        (Some(token), None) => token,
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the token file {}", path.display()))?
            .trim()
            .to_owned(),
        _ => bail!("give the bearer token with --token-file, --token or HRSYNC_SCIM_APP_TOKEN"),
    };
    if token.is_empty() {
        bail!("the bearer token is empty");
    }
    let credential = match (args.oauth_client_secret, &args.oauth_client_public_key_file) {
        (Some(secret), None) => Some(ClientCredential::Secret(secret)),
        (None, Some(path)) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("reading the public key file {}", path.display()))?;
            let key = ClientPublicKey::from_pem(&pem)
                .map_err(|e| anyhow::anyhow!("the public key file {}: {e}", path.display()))?;
            Some(ClientCredential::PublicKey(key))
        }
        _ => None,
    };
    let oauth = match (args.oauth_client_id, credential) {
        (Some(client_id), Some(credential)) => Some(OAuthClient {
            client_id,
            credential,
            token_lifetime: std::time::Duration::from_secs(args.oauth_token_lifetime_s),
        }),
        (None, _) => None,
        (Some(_), None) => {
            bail!("--oauth-client-id needs --oauth-client-secret or --oauth-client-public-key-file")
        }
    };
    let options = Options {
        base_url: args.base_url,
        max_results: args.max_results,
        max_body_bytes: args.max_body_bytes,
        oauth,
        quirks: args.quirks.into_iter().collect(),
        patch_delay: std::time::Duration::from_millis(args.patch_delay_ms),
    };
    if !options.quirks.is_empty() {
        let names: Vec<&str> = options.quirks.iter().map(|q| q.name()).collect();
        tracing::warn!(quirks = %names.join(","), "quirk modes on: the app departs from RFC 7644");
    }
    let state = AppState::with_options(token, options);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("listening on {addr}");
    tracing::info!(%addr, "hrsync-scim-app listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown())
        .await
        .context("serving")?;
    tracing::info!("hrsync-scim-app stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM (what `docker stop` sends).
async fn shutdown() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
