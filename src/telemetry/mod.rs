//! Metrics and logs, as fixed by the observability contract in DESIGN.md.

pub mod audit;
pub mod logging;
pub mod metrics;
