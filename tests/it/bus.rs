//! hrsync-bus against a real Kafka-protocol broker (tansu).

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use hrsync_bus::{ensure_topics, OutgoingRecord, Producer, TopicSpec};
use hrsync_tests::{unique, Broker};

/// A `bus-probe` consumer process whose output lines arrive on a channel.
struct Probe {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Probe {
    fn start(broker: &Broker, topic: &str, group: &str, extra: &[&str]) -> anyhow::Result<Self> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bus-probe"))
            .args(["--brokers", &broker.bootstrap(), "--topic", topic])
            .args(["--group", group, "--dlq", &format!("{topic}.dlq")])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout: ChildStdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Probe { child, lines })
    }

    /// Reads lines until one equals `want`; returns every line read.
    fn until(&self, want: &str, timeout: Duration) -> Vec<String> {
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line == want;
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(_) => panic!("probe never printed {want:?}; it printed {seen:?}"),
            }
        }
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL the probe");
        self.child.wait().expect("reap the probe");
    }

    fn wait_exit(mut self) {
        let status = self.child.wait().expect("probe exits");
        assert!(status.success(), "probe failed: {status}");
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        // A failed assertion must not leave the process behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn produce(producer: &Producer, topic: &str, payloads: &[&str]) -> anyhow::Result<()> {
    for payload in payloads {
        producer
            .send(OutgoingRecord {
                topic,
                key: b"same-key",
                payload: payload.as_bytes(),
                headers: &[],
            })
            .await?;
    }
    Ok(())
}

/// A consumer killed (SIGKILL) after it received a record but before it
/// finished it gets that record again on restart; after a clean shutdown,
/// finished records are not delivered again.
#[tokio::test(flavor = "multi_thread")]
async fn killed_consumer_redelivers_unfinished_and_clean_restart_does_not_repeat(
) -> anyhow::Result<()> {
    let broker = Broker::start()?;
    let kafka = broker.kafka_config();
    let topic = unique("crash");
    let group = unique("crash-group");
    ensure_topics(
        &kafka,
        &[
            TopicSpec::new(&topic, 1),
            TopicSpec::new(format!("{topic}.dlq"), 1),
        ],
    )
    .await?;
    let producer = Producer::new(&kafka)?;
    produce(&producer, &topic, &["one", "two", "three"]).await?;

    // First run: finishes "one", hangs inside "two", is killed there.
    let probe = Probe::start(&broker, &topic, &group, &["--hang-on", "two"])?;
    let seen = probe.until("received 1 two", Duration::from_secs(60));
    assert!(seen.contains(&"done 0 one".to_owned()), "{seen:?}");
    // Let auto-commit (1 s interval) commit the finished record's offset, so
    // the restart shows exactly where the stored offset stood.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    probe.kill();

    // Second run: "two" comes back (no loss); "one" does not (it was done).
    let probe = Probe::start(&broker, &topic, &group, &["--stop-after", "2"])?;
    let seen = probe.until("stopped", Duration::from_secs(60));
    let received: Vec<&String> = seen.iter().filter(|l| l.starts_with("received")).collect();
    assert_eq!(
        received,
        ["received 1 two", "received 2 three"],
        "unfinished record redelivered first, finished one not: {seen:?}"
    );
    probe.wait_exit();

    // Third run after a clean shutdown: only the new record arrives.
    produce(&producer, &topic, &["four"]).await?;
    let probe = Probe::start(&broker, &topic, &group, &["--stop-after", "1"])?;
    let seen = probe.until("stopped", Duration::from_secs(60));
    let received: Vec<&String> = seen.iter().filter(|l| l.starts_with("received")).collect();
    assert_eq!(received, ["received 3 four"], "{seen:?}");
    probe.wait_exit();
    Ok(())
}
