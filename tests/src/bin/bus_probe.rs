//! A consumer process for crash tests: joins a group through hrsync-bus's
//! at-least-once loop and prints `received <offset> <payload>` and
//! `done <offset> <payload>` lines. With `--hang-on PAYLOAD` it never finishes
//! that record, so a test can SIGKILL it mid-record.

use clap::Parser;
use hrsync_bus::{
    Consumer, ConsumerSettings, DlqPublisher, Handler, KafkaConfig, Outcome, Producer, Record,
};
use std::io::Write;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    brokers: String,
    #[arg(long)]
    topic: String,
    #[arg(long)]
    group: String,
    #[arg(long)]
    dlq: String,
    /// Never finish the record with this payload.
    #[arg(long)]
    hang_on: Option<String>,
    /// Shut down cleanly after this many finished records.
    #[arg(long)]
    stop_after: Option<usize>,
}

struct Probe {
    hang_on: Option<String>,
    finished: usize,
    stop_after: Option<usize>,
    shutdown: CancellationToken,
}

impl Handler for Probe {
    async fn handle(&mut self, record: &Record) -> Outcome {
        let payload = String::from_utf8_lossy(record.payload.as_deref().unwrap_or_default());
        say(&format!("received {} {payload}", record.offset));
        if self.hang_on.as_deref() == Some(&*payload) {
            std::future::pending::<()>().await;
        }
        say(&format!("done {} {payload}", record.offset));
        self.finished += 1;
        if Some(self.finished) == self.stop_after {
            self.shutdown.cancel();
        }
        Outcome::Done
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let kafka = KafkaConfig::new(args.brokers);
    let mut settings = ConsumerSettings::new("probe", &args.group, &[args.topic.as_str()]);
    settings.session_timeout = Duration::from_secs(6);
    let consumer = Consumer::new(&kafka, settings)?;
    let dlq = DlqPublisher::new(Producer::new(&kafka)?, args.dlq, "probe");
    let shutdown = CancellationToken::new();
    let probe = Probe {
        hang_on: args.hang_on,
        finished: 0,
        stop_after: args.stop_after,
        shutdown: shutdown.clone(),
    };
    say("started");
    consumer.run(probe, &dlq, shutdown).await?;
    say("stopped");
    Ok(())
}
