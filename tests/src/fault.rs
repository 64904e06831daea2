//! A fault-injecting HTTP proxy for SCIM fault tests: it forwards requests to
//! a real server and, as scripted, answers with an error status, delays,
//! drops the connection before forwarding, or forwards and then drops the
//! connection (the request is applied, the response lost).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status (and `Retry-After` seconds, if given)
    /// without forwarding.
    Status {
        /// HTTP status.
        status: u16,
        /// `Retry-After` in seconds.
        retry_after: Option<u64>,
    },
    /// Wait, then forward and answer.
    Delay(Duration),
    /// Close the connection without forwarding.
    Drop,
    /// Forward (the server applies it), then close without answering.
    LoseResponse,
    /// Answer 200 without forwarding, with a body of `bytes` spaces: its
    /// length declared in `Content-Length` when `declared`, else read until
    /// the connection closes.
    Oversized {
        /// The body's size.
        bytes: usize,
        /// Whether `Content-Length` says so.
        declared: bool,
    },
}

/// One scripted fault: applies to the next request whose method matches.
#[derive(Debug, Clone)]
struct Rule {
    method: Option<String>,
    fault: Fault,
}

/// What the accept loop shares with each connection it serves.
#[derive(Debug, Clone)]
struct Shared {
    rules: Arc<Mutex<VecDeque<Rule>>>,
    shares: Arc<Mutex<Vec<(Fault, f64)>>>,
    seen: Arc<Mutex<Vec<String>>>,
    applied: Arc<Mutex<Vec<(String, Fault)>>>,
    traces: Arc<Mutex<Vec<String>>>,
    upstream: String,
    http: reqwest::Client,
}

/// The proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Shared,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Ok(mut task) = self.task.lock() {
            if let Some(task) = task.take() {
                task.abort();
            }
        }
    }
}

/// Accepts connections on `listener` and serves each on its own task.
fn accept_loop(listener: TcpListener, shared: Shared) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let shared = shared.clone();
            tokio::spawn(async move {
                let _ = serve(stream, &shared).await;
            });
        }
    })
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (`http://127.0.0.1:PORT`, no
    /// path), on a free port.
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Shared {
            rules: Arc::default(),
            shares: Arc::default(),
            seen: Arc::default(),
            applied: Arc::default(),
            traces: Arc::default(),
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        };
        let task = accept_loop(listener, shared.clone());
        Ok(FaultProxy {
            addr,
            shared,
            task: Mutex::new(Some(task)),
        })
    }

    /// Stops listening: new connections are refused (requests already
    /// received are still answered) until [`FaultProxy::listen_again`].
    pub fn refuse_connections(&self) {
        if let Ok(mut task) = self.task.lock() {
            if let Some(task) = task.take() {
                task.abort();
            }
        }
    }

    /// Listens again on the same port after
    /// [`FaultProxy::refuse_connections`]; a no-op while listening.
    pub async fn listen_again(&self) -> anyhow::Result<()> {
        if self.task.lock().map(|t| t.is_some()).unwrap_or(true) {
            return Ok(());
        }
        // The aborted accept loop releases the port once it has stopped.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => return Err(anyhow::anyhow!("binding {} again: {error}", self.addr)),
            }
        };
        let task = accept_loop(listener, self.shared.clone());
        if let Ok(mut slot) = self.task.lock() {
            *slot = Some(task);
        }
        Ok(())
    }

    /// Applies `fault` to a random `share` (0 to 1) of the requests that no
    /// scripted fault ([`FaultProxy::inject`]) claims, until
    /// [`FaultProxy::clear_shares`]. Shares add up: with 0.1 of one fault
    /// and 0.2 of another, 30 % of the requests get one of them.
    pub fn fail_share(&self, fault: Fault, share: f64) {
        if let Ok(mut shares) = self.shared.shares.lock() {
            shares.push((fault, share));
        }
    }

    /// Ends every [`FaultProxy::fail_share`].
    pub fn clear_shares(&self) {
        if let Ok(mut shares) = self.shared.shares.lock() {
            shares.clear();
        }
    }

    /// `http://127.0.0.1:PORT`, to which the upstream's paths are appended.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Applies `fault` to the next request with `method` (any if `None`).
    pub fn inject(&self, method: Option<&str>, fault: Fault) {
        if let Ok(mut rules) = self.shared.rules.lock() {
            rules.push_back(Rule {
                method: method.map(str::to_owned),
                fault,
            });
        }
    }

    /// `METHOD path` of every request received, in order.
    pub fn seen(&self) -> Vec<String> {
        self.shared
            .seen
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// `METHOD path` and the fault of every request a fault was applied
    /// to, scripted or drawn from a share, in order.
    pub fn applied(&self) -> Vec<(String, Fault)> {
        self.shared
            .applied
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    /// The `traceparent` header of every request that had one, in order.
    pub fn traceparents(&self) -> Vec<String> {
        self.shared
            .traces
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }
}

/// The fault for a request with `method`: the first scripted rule that
/// matches it, else one drawn from the shares.
fn fault_for(shared: &Shared, method: &str) -> Option<Fault> {
    let scripted = shared.rules.lock().ok().and_then(|mut rules| {
        let i = rules
            .iter()
            .position(|r| r.method.as_deref().is_none_or(|m| m == method))?;
        rules.remove(i).map(|r| r.fault)
    });
    if scripted.is_some() {
        return scripted;
    }
    let shares = shared.shares.lock().ok()?;
    let mut draw: f64 = rand::random();
    for (fault, share) in shares.iter() {
        if draw < *share {
            return Some(fault.clone());
        }
        draw -= share;
    }
    None
}

async fn serve(mut stream: TcpStream, shared: &Shared) -> anyhow::Result<()> {
    let (seen, traces, upstream, http) =
        (&shared.seen, &shared.traces, &shared.upstream, &shared.http);
    // Read the head, then the body by Content-Length.
    let mut buffer = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "client closed");
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "client closed mid-body");
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = buffer[head_end..head_end + length].to_vec();
    if let Some((_, trace)) = headers.iter().find(|(k, _)| k == "traceparent") {
        if let Ok(mut traces) = traces.lock() {
            traces.push(trace.clone());
        }
    }
    let line = format!("{method} {}", target.split('?').next().unwrap_or_default());
    let fault = fault_for(shared, &method);
    if let (Some(fault), Ok(mut applied)) = (&fault, shared.applied.lock()) {
        applied.push((line.clone(), fault.clone()));
    }
    if let Ok(mut seen) = seen.lock() {
        seen.push(line);
    }
    match fault {
        Some(Fault::Status {
            status,
            retry_after,
        }) => {
            let retry = retry_after
                .map(|s| format!("Retry-After: {s}\r\n"))
                .unwrap_or_default();
            let body = format!(
                "{{\"schemas\":[\"urn:ietf:params:scim:api:messages:2.0:Error\"],\"status\":\"{status}\",\"detail\":\"injected\"}}"
            );
            let response = format!(
                "HTTP/1.1 {status} Injected\r\n{retry}Content-Type: application/scim+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(response.as_bytes()).await?;
            return Ok(());
        }
        Some(Fault::Oversized { bytes, declared }) => {
            let length = if declared {
                format!("Content-Length: {bytes}\r\n")
            } else {
                String::new()
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/scim+json\r\n{length}Connection: close\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await?;
            let chunk = vec![b' '; 1 << 16];
            let mut left = bytes;
            while left > 0 {
                let n = left.min(chunk.len());
                // The client may hang up as soon as it has seen enough.
                if stream.write_all(&chunk[..n]).await.is_err() {
                    return Ok(());
                }
                left -= n;
            }
            return Ok(());
        }
        Some(Fault::Drop) => return Ok(()),
        Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(Fault::LoseResponse) | None => {}
    }
    let mut request = http.request(
        reqwest::Method::from_bytes(method.as_bytes())?,
        format!("{upstream}{target}"),
    );
    for (k, v) in &headers {
        if !matches!(k.as_str(), "host" | "content-length" | "connection") {
            request = request.header(k.as_str(), v.as_str());
        }
    }
    let response = request.body(body).send().await?;
    if fault == Some(Fault::LoseResponse) {
        return Ok(());
    }
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/scim+json")
        .to_owned();
    let body = response.bytes().await?;
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("OK"),
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    Ok(())
}
