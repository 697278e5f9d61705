//! Measurements every stage reports: counters, byte totals and latency
//! distributions, serialised into the run report under stable names.

use serde::{Deserialize, Serialize};

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LatencyStats {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
    /// Sum of all samples.
    pub total_ms: f64,
    /// The samples, in this process only (for histograms of the metrics).
    #[serde(skip)]
    pub samples_ms: Vec<f64>,
}

/// Collects latency samples. Stages make at most a few thousand timed calls
/// per run, so exact percentiles over the kept samples are affordable.
#[derive(Debug, Clone, Default)]
pub struct LatencyRecorder {
    samples: Vec<f64>,
}

impl LatencyRecorder {
    /// Records one sample.
    pub fn record(&mut self, d: std::time::Duration) {
        self.samples.push(d.as_secs_f64() * 1000.0);
    }

    /// Records one sample in milliseconds.
    pub fn record_ms(&mut self, ms: f64) {
        self.samples.push(ms);
    }

    /// Merges another recorder's samples.
    pub fn merge(&mut self, other: &LatencyRecorder) {
        self.samples.extend_from_slice(&other.samples);
    }

    /// Summary of the samples.
    pub fn stats(&self) -> LatencyStats {
        if self.samples.is_empty() {
            return LatencyStats::default();
        }
        let mut s = self.samples.clone();
        s.sort_by(f64::total_cmp);
        LatencyStats {
            count: s.len() as u64,
            p50_ms: percentile(&s, 0.50),
            p95_ms: percentile(&s, 0.95),
            max_ms: s[s.len() - 1],
            total_ms: s.iter().sum(),
            samples_ms: self.samples.clone(),
        }
    }
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut r = LatencyRecorder::default();
        for i in 1..=100 {
            r.record_ms(i as f64);
        }
        let s = r.stats();
        assert_eq!(
            (s.count, s.p50_ms, s.p95_ms, s.max_ms),
            (100, 50.0, 95.0, 100.0)
        );
        assert_eq!(LatencyRecorder::default().stats(), LatencyStats::default());
    }
}
