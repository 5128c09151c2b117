//! What every criterion benchmark here shares.

use std::time::Duration;

use criterion::Criterion;

/// `cargo bench` passes `--bench` and gets criterion's full, timed run. `cargo test
/// --all-targets` runs the bench binaries too, with libtest's flags (`--test-threads`)
/// that criterion rejects: then each benchmark runs briefly, as a smoke test that it
/// still works (its figures mean nothing).
pub fn criterion() -> Criterion {
    if std::env::args().any(|a| a == "--bench") {
        Criterion::default().configure_from_args()
    } else {
        Criterion::default()
            .sample_size(10)
            .warm_up_time(Duration::from_millis(20))
            .measurement_time(Duration::from_millis(50))
            .without_plots()
    }
}
