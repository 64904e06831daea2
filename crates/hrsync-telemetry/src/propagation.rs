//! W3C trace context (`traceparent`, `tracestate`) in and out of carriers
//! such as Kafka record headers and HTTP headers.
//!
//! hrsync always speaks W3C trace context, whatever exporter is configured,
//! so one trace can span ingest → projector → provisioner → SCIM call.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Header name of the W3C trace parent.
pub const TRACEPARENT: &str = "traceparent";
/// Header name of the W3C trace state.
pub const TRACESTATE: &str = "tracestate";

/// The trace context of `span` as header pairs (empty when the span is not
/// sampled or no OpenTelemetry layer is installed).
pub fn inject(span: &tracing::Span) -> Vec<(String, String)> {
    let mut carrier = PairInjector(Vec::new());
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.0
}

/// Makes `span` a child of the trace context found in `headers` (if any
/// valid `traceparent` is present; otherwise `span` starts a new trace).
pub fn continue_from<'a, I>(span: &tracing::Span, headers: I)
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let carrier = PairExtractor(
        headers
            .into_iter()
            .filter_map(|(k, v)| std::str::from_utf8(v).ok().map(|v| (k, v)))
            .collect(),
    );
    let parent = TraceContextPropagator::new().extract(&carrier);
    if parent.span().span_context().is_valid() {
        // Only fails when the span is disabled by the filter; then there is
        // nothing to continue.
        let _ = span.set_parent(parent);
    }
}

/// The hex trace id of `span`, if it has a valid one.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// The trace id of a `traceparent` header value
/// (`00-<trace id>-<parent id>-<flags>`), if the value is well formed and
/// the ids are not all zeros.
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    // Version 00 has exactly four fields; later versions may add some.
    let fields_fit = version != "00" || parts.next().is_none();
    (hex(version, 2)
        && version != "ff"
        && fields_fit
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && nonzero(trace)
        && nonzero(parent))
    .then_some(trace)
}

struct PairInjector(Vec<(String, String)>);

impl Injector for PairInjector {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

struct PairExtractor<'a>(Vec<(&'a str, &'a str)>);

impl Extractor for PairExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| *v)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| *k).collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_trace_id_is_read_from_a_well_formed_traceparent_only() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            trace_id_of(&format!("00-{id}-00f067aa0ba902b7-01")),
            Some(id)
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
        ] {
            assert_eq!(trace_id_of(bad), None, "{bad:?}");
        }
    }

    use super::*;

    #[test]
    fn context_round_trips_through_headers() {
        crate::init_for_tests();
        let producer = tracing::info_span!("produce");
        let headers = inject(&producer);
        let traceparent = headers
            .iter()
            .find(|(k, _)| k == TRACEPARENT)
            .map(|(_, v)| v.clone())
            .expect("traceparent injected");
        let producer_trace = trace_id(&producer).expect("producer has a trace");
        assert!(traceparent.contains(&producer_trace), "{traceparent}");

        let consumer = tracing::info_span!("consume");
        continue_from(
            &consumer,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())),
        );
        assert_eq!(
            trace_id(&consumer).as_deref(),
            Some(producer_trace.as_str())
        );
    }

    #[test]
    fn garbage_traceparent_starts_a_new_trace() {
        crate::init_for_tests();
        let consumer = tracing::info_span!("consume");
        continue_from(&consumer, [(TRACEPARENT, b"00-zzzz-not-valid".as_slice())]);
        let id = trace_id(&consumer).expect("fresh trace");
        assert_ne!(id, "00000000000000000000000000000000");
    }
}
