//! One pushed event, one trace through every stage: the hire's trace, as a
//! real OTLP receiver gets it (oteltest's HttpSink from PyPI, run by
//! `tests/otlp/sink.py`), holds the push API's span, the projector's
//! publication of the change, the provisioner's consumption of it and the
//! SCIM call to the app, each from its own process.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::stack::{eventually, lucys_hire, Processes, ScimApps};

/// The OTLP/HTTP receiver, and the spans it printed so far.
struct Sink {
    child: Child,
    port: u16,
    spans: Arc<Mutex<Vec<Value>>>,
}

impl Sink {
    fn start() -> anyhow::Result<Self> {
        let python = hrsync_tests::tools_dir().join("venv-otlp/bin/python");
        anyhow::ensure!(
            python.is_file(),
            "{} is missing: run scripts/test, which makes it",
            python.display()
        );
        let port = hrsync_tests::free_port()?;
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/otlp/sink.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped stdout");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let (ready, listening) = std::sync::mpsc::channel();
        let seen = spans.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("listening on") {
                    let _ = ready.send(());
                } else if let Ok(span) = serde_json::from_str::<Value>(&line) {
                    seen.lock().expect("spans").push(span);
                }
            }
        });
        listening
            .recv_timeout(std::time::Duration::from_secs(30))
            .map_err(|_| anyhow::anyhow!("the OTLP sink did not start"))?;
        Ok(Sink { child, port, spans })
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/traces", self.port)
    }

    /// The names of the spans of `trace`, by service.
    fn trace(&self, trace: &str) -> BTreeMap<String, Vec<String>> {
        let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for span in self.spans.lock().expect("spans").iter() {
            if span["trace_id"] == trace {
                names
                    .entry(span["service"].as_str().unwrap_or_default().to_owned())
                    .or_default()
                    .push(span["name"].as_str().unwrap_or_default().to_owned());
            }
        }
        names
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pushed_hire_is_one_trace_through_every_stage() -> anyhow::Result<()> {
    let sink = Sink::start()?;
    let apps = ScimApps::third_party(&["slack"]).await?;
    let stack = Processes::start_traced(
        &apps,
        &["ingest", "projector", "provisioner"],
        &sink.endpoint(),
    )
    .await?;
    let trace = "5a1c0ffee5a1c0ffee5a1c0ffee5a1c0";
    stack
        .push_traced(
            lucys_hire(),
            Some(&format!("00-{trace}-00f067aa0ba902b7-01")),
        )
        .await?;
    let wanted = [
        ("hrsync-ingest", "push.event"),
        ("hrsync-projector", "projector.publish"),
        ("hrsync-provisioner", "kafka.consume"),
        ("hrsync-provisioner", "scim.request"),
    ];
    // Spans leave each process in batches (every few seconds).
    eventually("every stage's spans in the hire's trace", || async {
        let spans = sink.trace(trace);
        Ok(wanted.iter().all(|(service, name)| {
            spans
                .get(*service)
                .is_some_and(|names| names.iter().any(|n| n == name))
        }))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{:#?}", sink.trace(trace)))?;
    Ok(())
}
