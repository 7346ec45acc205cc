//! JSON logs on stdout through a non-blocking writer, so a slow log sink never
//! slows a request.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber; keep the guard alive until exit so buffered
/// lines are flushed. `RUST_LOG` overrides the default level.
pub fn init() -> Option<WorkerGuard> {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ok = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .with_env_filter(filter)
        .with_writer(writer)
        .try_init()
        .is_ok();
    ok.then_some(guard)
}
