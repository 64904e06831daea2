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
}

/// One scripted fault: applies to the next request whose method matches.
#[derive(Debug, Clone)]
struct Rule {
    method: Option<String>,
    fault: Fault,
}

/// The proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    rules: Arc<Mutex<VecDeque<Rule>>>,
    seen: Arc<Mutex<Vec<String>>>,
    traces: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (`http://127.0.0.1:PORT`, no
    /// path), on a free port.
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let rules: Arc<Mutex<VecDeque<Rule>>> = Arc::default();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let traces: Arc<Mutex<Vec<String>>> = Arc::default();
        let upstream = upstream.trim_end_matches('/').to_owned();
        let http = reqwest::Client::new();
        let (task_rules, task_log) = (rules.clone(), (seen.clone(), traces.clone()));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (rules, log, upstream, http) = (
                    task_rules.clone(),
                    task_log.clone(),
                    upstream.clone(),
                    http.clone(),
                );
                tokio::spawn(async move {
                    let _ = serve(stream, &rules, (&log.0, &log.1), &upstream, &http).await;
                });
            }
        });
        Ok(FaultProxy {
            addr,
            rules,
            seen,
            traces,
            task,
        })
    }

    /// `http://127.0.0.1:PORT`, to which the upstream's paths are appended.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Applies `fault` to the next request with `method` (any if `None`).
    pub fn inject(&self, method: Option<&str>, fault: Fault) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.push_back(Rule {
                method: method.map(str::to_owned),
                fault,
            });
        }
    }

    /// `METHOD path` of every request received, in order.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The `traceparent` header of every request that had one, in order.
    pub fn traceparents(&self) -> Vec<String> {
        self.traces.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

async fn serve(
    mut stream: TcpStream,
    rules: &Mutex<VecDeque<Rule>>,
    (seen, traces): (&Mutex<Vec<String>>, &Mutex<Vec<String>>),
    upstream: &str,
    http: &reqwest::Client,
) -> anyhow::Result<()> {
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
    if let Ok(mut seen) = seen.lock() {
        seen.push(format!(
            "{method} {}",
            target.split('?').next().unwrap_or_default()
        ));
    }
    let fault = rules.lock().ok().and_then(|mut rules| {
        let i = rules
            .iter()
            .position(|r| r.method.as_deref().is_none_or(|m| m == method))?;
        rules.remove(i).map(|r| r.fault)
    });
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
