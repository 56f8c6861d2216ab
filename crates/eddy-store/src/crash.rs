//! Crash points: the named instants between a persisted state and its side effect (after the
//! loop-in offer is stored and before the funding is broadcast, after the broadcast and before
//! it is recorded, before the server sends a payment) where a test can make the
//! process die on the spot. With `EDDY_CRASH_AT=<name>[,<name>…]` in its environment, the
//! process calls [`std::process::abort`] when it reaches a listed point: no destructor, no
//! flush, no graceful shutdown — what `kill -9` does at that exact instant, which a test
//! cannot otherwise aim at. Without the variable (production) a point costs one cached lookup.

use std::sync::OnceLock;

/// The variable naming the points to crash at.
pub const CRASH_AT_ENV: &str = "EDDY_CRASH_AT";

/// Aborts the process if `name` is listed in `EDDY_CRASH_AT`.
pub fn crash_point(name: &str) {
    static POINTS: OnceLock<Vec<String>> = OnceLock::new();
    let points = POINTS.get_or_init(|| {
        std::env::var(CRASH_AT_ENV)
            .map(|v| v.split(',').map(|p| p.trim().to_string()).collect())
            .unwrap_or_default()
    });
    if points.iter().any(|p| p == name) {
        eprintln!("eddy: crash point {name} reached ({CRASH_AT_ENV}): aborting");
        std::process::abort();
    }
}
