//! [`Rate`]: how fast a counter (the log head, a projection's position) moves, from
//! samples taken about once a second over the last [`WINDOW`].
//!
//! Invariant: a rate is computed from two samples at least a second apart, so a burst
//! read right after a single sample never shows as an absurd figure.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How far back a rate looks.
pub const WINDOW: Duration = Duration::from_secs(10);

/// A counter's recent samples.
#[derive(Debug, Default)]
pub struct Rate {
    samples: Mutex<VecDeque<(Instant, u64)>>,
}

impl Rate {
    /// Records the counter's value now (samples older than [`WINDOW`] are dropped,
    /// but always keeping two).
    pub fn sample(&self, value: u64) {
        self.sample_at(Instant::now(), value);
    }

    fn sample_at(&self, now: Instant, value: u64) {
        if let Ok(mut samples) = self.samples.lock() {
            samples.push_back((now, value));
            while samples.len() > 2
                && samples
                    .front()
                    .is_some_and(|(at, _)| now.duration_since(*at) > WINDOW)
            {
                samples.pop_front();
            }
        }
    }

    /// Units per second over the window; 0 until two samples a second apart exist.
    pub fn per_second(&self) -> f64 {
        let Ok(samples) = self.samples.lock() else {
            return 0.0;
        };
        match (samples.front(), samples.back()) {
            (Some((t0, v0)), Some((t1, v1))) => {
                let seconds = t1.duration_since(*t0).as_secs_f64();
                if seconds < 1.0 {
                    0.0
                } else {
                    v1.saturating_sub(*v0) as f64 / seconds
                }
            }
            _ => 0.0,
        }
    }
}

/// The rates a node reports: the log's appends and each projection version's folds,
/// sampled by [`Rates::sample`] about once a second.
#[derive(Debug, Default)]
pub struct Rates {
    /// Events appended.
    pub appends: Rate,
    folds: Mutex<HashMap<String, Rate>>,
}

impl Rates {
    /// Samples the log head and the position of each projection (by label); forgets
    /// projections no longer listed.
    pub fn sample(&self, head: u64, positions: &[(String, u64)]) {
        self.appends.sample(head);
        if let Ok(mut folds) = self.folds.lock() {
            folds.retain(|label, _| positions.iter().any(|(l, _)| l == label));
            for (label, position) in positions {
                folds.entry(label.clone()).or_default().sample(*position);
            }
        }
    }

    /// Events per second the projection `label` folds.
    pub fn folds(&self, label: &str) -> f64 {
        self.folds
            .lock()
            .ok()
            .and_then(|f| f.get(label).map(Rate::per_second))
            .unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_is_the_slope_over_the_window() {
        let rate = Rate::default();
        let start = Instant::now();
        assert_eq!(rate.per_second(), 0.0);
        rate.sample_at(start, 100);
        rate.sample_at(start + Duration::from_millis(500), 10_000);
        assert_eq!(rate.per_second(), 0.0, "less than a second apart");
        for s in 1..=20u64 {
            rate.sample_at(start + Duration::from_secs(s), 100 + 50 * s);
        }
        // The window holds the last 10 s: 50 per second.
        assert!(
            (rate.per_second() - 50.0).abs() < 1e-9,
            "{}",
            rate.per_second()
        );
    }
}
