//! Which worker runtime a thread serves. The proxy serves connections on one
//! single-threaded runtime per core; each upstream keeps one connection pool
//! per worker, so a request and its upstream connection share a thread.

use std::cell::Cell;

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
    static EVENT_LOOP: Cell<bool> = const { Cell::new(false) };
}

/// How many worker runtimes serve connections: one per core the process
/// may use (cgroup CPU quotas included).
pub fn count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Marks the current thread as serving worker `i`.
pub fn set_index(i: usize) {
    INDEX.with(|c| c.set(i));
}

/// Marks the current thread as a worker's event loop (not one of its
/// blocking threads).
pub fn mark_event_loop() {
    EVENT_LOOP.with(|c| c.set(true));
}

/// Whether the current thread runs a worker's event loop: work here must
/// not wait for another task of the same runtime.
pub fn on_event_loop() -> bool {
    EVENT_LOOP.with(Cell::get)
}

/// The worker the current thread serves; 0 off the workers.
pub fn index() -> usize {
    INDEX.with(Cell::get)
}
