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

/// A cap on log lines of one kind: refusals during a flood are counted, not
/// written, and the next line that passes says how many were left out.
pub struct LogGate {
    limiter: governor::DefaultDirectRateLimiter<
        governor::middleware::NoOpMiddleware<std::time::Instant>,
    >,
    suppressed: std::sync::atomic::AtomicU64,
}

impl LogGate {
    pub fn new(per_second: u32, burst: u32) -> LogGate {
        let q = governor::Quota::per_second(
            std::num::NonZeroU32::MIN.saturating_add(per_second.saturating_sub(1)),
        )
        .allow_burst(std::num::NonZeroU32::MIN.saturating_add(burst.saturating_sub(1)));
        LogGate {
            limiter: governor::RateLimiter::direct(q),
            suppressed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(lines left out since the last one written)` when this line may be written.
    pub fn admit(&self) -> Option<u64> {
        use std::sync::atomic::Ordering;
        if self.limiter.check().is_ok() {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_counted_not_written() {
        let gate = LogGate::new(1, 5);
        let written = (0..1000).filter(|_| gate.admit().is_some()).count();
        assert_eq!(written, 5);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        // The next line that passes reports how many were left out.
        assert_eq!(gate.admit(), Some(995));
        assert_eq!(gate.admit(), None);
    }
}
