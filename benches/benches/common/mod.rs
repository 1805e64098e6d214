//! Settings shared by the criterion benches.

use std::time::Duration;

/// Criterion settings that keep the whole `cargo bench -p ckpt-benches` run
/// short on a 2-vCPU machine: few samples, short warm-up and measurement, and
/// a tenth of criterion's default bootstrap resamples (the analysis otherwise
/// takes longer than the measurement).
pub fn quick_group_settings<M: criterion::measurement::Measurement>(
    group: &mut criterion::BenchmarkGroup<'_, M>,
) {
    group
        .sample_size(20)
        .nresamples(10_000)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1000));
}
