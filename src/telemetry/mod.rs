//! Metrics and logs, as fixed by the observability contract in DESIGN.md.

pub mod logging;
pub mod metrics;
