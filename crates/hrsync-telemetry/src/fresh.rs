//! A per-layer filter wrapper that keeps every decision fresh.
//!
//! `tracing-subscriber` hands a per-layer filter's decision from
//! `enabled()` to the event that follows through a thread-local. A callsite
//! every filter accepts is cached as "always enabled", and then its events
//! skip `enabled()` and read whatever the previous `enabled()` call on the
//! thread left there. sqlx asks `log_enabled!` after each query (through the
//! `log` bridge): at a log filter stricter than the spans' INFO, that left
//! "disabled" for the log layer and the next warning or error on the thread
//! was not written (tokio-rs/tracing#2519, open). [`Fresh`] caps a filter's
//! callsite interest at "sometimes", so `enabled()` runs before every event
//! and span and the thread-local is always the current one's.

use tracing::span;
use tracing::subscriber::Interest;
use tracing::{Event, Metadata};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Filter};

/// `F`, never cached as always enabled.
#[derive(Debug, Clone)]
pub(crate) struct Fresh<F>(pub(crate) F);

impl<S, F: Filter<S>> Filter<S> for Fresh<F> {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        self.0.enabled(meta, cx)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        let interest = self.0.callsite_enabled(meta);
        if interest.is_always() {
            Interest::sometimes()
        } else {
            interest
        }
    }

    fn event_enabled(&self, event: &Event<'_>, cx: &Context<'_, S>) -> bool {
        self.0.event_enabled(event, cx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.0.max_level_hint()
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, cx: Context<'_, S>) {
        self.0.on_new_span(attrs, id, cx);
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, cx: Context<'_, S>) {
        self.0.on_record(id, values, cx);
    }

    fn on_enter(&self, id: &span::Id, cx: Context<'_, S>) {
        self.0.on_enter(id, cx);
    }

    fn on_exit(&self, id: &span::Id, cx: Context<'_, S>) {
        self.0.on_exit(id, cx);
    }

    fn on_close(&self, id: span::Id, cx: Context<'_, S>) {
        self.0.on_close(id, cx);
    }
}
