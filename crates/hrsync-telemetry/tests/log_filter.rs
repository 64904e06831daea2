//! The log filter holds for every event, whatever was asked before it: at
//! "warn", a check such as sqlx's `log_enabled!` after each query (here
//! `tracing::enabled!`, and the `log` crate's `enabled`) must not make the
//! next warning or error disappear (it did: tokio-rs/tracing#2519). Its own
//! test binary, as it installs the process's global subscriber.

use std::io::Write;
use std::sync::{Arc, Mutex};

use hrsync_telemetry::TelemetryConfig;

/// Log lines, shared with the test.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lines").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for Lines {
    type Writer = Lines;

    fn make_writer(&'w self) -> Self::Writer {
        self.clone()
    }
}

#[test]
fn a_warning_after_an_enabled_check_is_written() {
    let lines = Lines::default();
    let config = TelemetryConfig {
        log_filter: "warn".to_owned(),
        ..TelemetryConfig::default()
    };
    let _guard = hrsync_telemetry::init_writing(&config, lines.clone()).expect("telemetry");
    for round in 0..2 {
        tracing::warn!("first warning {round}");
        let info = tracing::enabled!(tracing::Level::INFO);
        tracing::warn!("warning after enabled!(INFO) = {info} {round}");
        let asked = log::logger().enabled(
            &log::Metadata::builder()
                .level(log::Level::Info)
                .target("sqlx::query")
                .build(),
        );
        tracing::error!("error after log enabled = {asked} {round}");
        tracing::info!("an info line the filter drops {round}");
    }
    let text = String::from_utf8(lines.0.lock().expect("lines").clone()).expect("UTF-8");
    for round in 0..2 {
        for line in [
            format!("first warning {round}"),
            format!("warning after enabled!(INFO) = true {round}"),
            "error after log enabled".to_owned(),
        ] {
            assert!(text.contains(&line), "missing {line:?} in:\n{text}");
        }
        assert!(
            !text.contains(&format!("an info line the filter drops {round}")),
            "{text}"
        );
    }
}
