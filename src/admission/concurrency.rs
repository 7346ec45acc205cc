//! Concurrency gates: at most N requests in flight, a bounded wait for a slot,
//! and a slot that is released on every path because it is released on drop.

use prometheus::IntGauge;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Gate {
    slots: Option<Arc<Semaphore>>,
    pub max: Option<usize>,
    pub queue_timeout: Duration,
    in_flight: IntGauge,
}

/// A held slot. Dropping it — on success, error, timeout or client disconnect —
/// gives it back.
pub struct Slot {
    _permit: Option<OwnedSemaphorePermit>,
    gauge: IntGauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// No slot freed within the queue timeout.
#[derive(Debug)]
pub struct Busy;

impl Gate {
    pub fn new(max: Option<usize>, queue_timeout: Duration, in_flight: IntGauge) -> Gate {
        Gate {
            slots: max.map(|n| Arc::new(Semaphore::new(n))),
            max,
            queue_timeout,
            in_flight,
        }
    }

    /// Waits up to the queue timeout for a slot.
    pub async fn acquire(&self) -> Result<Slot, Busy> {
        let permit = match &self.slots {
            None => None,
            Some(sem) => {
                match tokio::time::timeout(self.queue_timeout, sem.clone().acquire_owned()).await {
                    Ok(Ok(p)) => Some(p),
                    _ => return Err(Busy),
                }
            }
        };
        self.in_flight.inc();
        Ok(Slot {
            _permit: permit,
            gauge: self.in_flight.clone(),
        })
    }

    /// `Retry-After` for a caller turned away: the queue wait, at least a second.
    pub fn retry_after_secs(&self) -> u64 {
        self.queue_timeout.as_secs().max(1)
    }
}
