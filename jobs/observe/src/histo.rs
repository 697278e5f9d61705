//! A mergeable latency histogram in milliseconds, with log-spaced buckets
//! (each 4% wider than the last), kept sparse. Run reports hold one per
//! tenant and window run; KPIs and reports merge them over any range, so
//! their quantiles are of records, not of per-window summaries. Quantiles
//! are the upper bound of the bucket holding the rank (at most 4% above
//! the true value, never below it), clipped to the largest value seen.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Growth of a bucket's upper bound over the previous one's.
const RATIO: f64 = 1.04;

/// A latency distribution.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histo {
    /// Values recorded.
    pub count: u64,
    /// Sum of the values, ms.
    pub sum_ms: f64,
    /// Smallest value, ms.
    pub min_ms: f64,
    /// Largest value, ms.
    pub max_ms: f64,
    /// Bucket index → values in it. Bucket 0 holds values up to 1 ms;
    /// bucket `i` those in (1.04^(i-1), 1.04^i].
    pub buckets: BTreeMap<u16, u64>,
}

fn index(ms: f64) -> u16 {
    if ms <= 1.0 {
        return 0;
    }
    let i = (ms.ln() / RATIO.ln()).ceil();
    // Float rounding at a bound: the value belongs to the lower bucket.
    let i = if RATIO.powf(i - 1.0) >= ms {
        i - 1.0
    } else {
        i
    };
    i.clamp(0.0, f64::from(u16::MAX)) as u16
}

/// The upper bound of bucket `i`, ms.
pub fn upper_bound(i: u16) -> f64 {
    RATIO.powi(i32::from(i))
}

impl Histo {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one value, ms (negative values count as 0: clocks differ).
    pub fn record(&mut self, ms: f64) {
        self.record_n(ms, 1);
    }

    /// Records `n` values of `ms`.
    pub fn record_n(&mut self, ms: f64, n: u64) {
        if n == 0 || !ms.is_finite() {
            return;
        }
        let ms = ms.max(0.0);
        if self.count == 0 || ms < self.min_ms {
            self.min_ms = ms;
        }
        if self.count == 0 || ms > self.max_ms {
            self.max_ms = ms;
        }
        self.count += n;
        self.sum_ms += ms * n as f64;
        *self.buckets.entry(index(ms)).or_default() += n;
    }

    /// Adds another histogram's values.
    pub fn merge(&mut self, o: &Histo) {
        if o.count == 0 {
            return;
        }
        if self.count == 0 || o.min_ms < self.min_ms {
            self.min_ms = o.min_ms;
        }
        if self.count == 0 || o.max_ms > self.max_ms {
            self.max_ms = o.max_ms;
        }
        self.count += o.count;
        self.sum_ms += o.sum_ms;
        for (i, n) in &o.buckets {
            *self.buckets.entry(*i).or_default() += n;
        }
    }

    /// The same values, each `by_ms` later (ages measured at one time,
    /// turned into latencies at a later one). Exact for min, max and sum;
    /// a value moves by its bucket's bound, so stays within one bucket.
    pub fn shifted(&self, by_ms: f64) -> Histo {
        let mut out = Histo::new();
        if self.count == 0 {
            return out;
        }
        for (i, n) in &self.buckets {
            let v = upper_bound(*i).min(self.max_ms).max(self.min_ms);
            *out.buckets.entry(index((v + by_ms).max(0.0))).or_default() += n;
        }
        out.count = self.count;
        out.sum_ms = self.sum_ms + by_ms * self.count as f64;
        out.min_ms = (self.min_ms + by_ms).max(0.0);
        out.max_ms = (self.max_ms + by_ms).max(0.0);
        out
    }

    /// The `q` quantile (0 to 1), ms; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return Some(upper_bound(*i).min(self.max_ms).max(self.min_ms));
            }
        }
        Some(self.max_ms)
    }

    /// Mean, ms.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_ms / self.count as f64)
    }

    /// Each bucket's representative value (its upper bound, within the
    /// values seen) and count: what a Prometheus histogram observes.
    pub fn points(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.buckets
            .iter()
            .map(|(i, n)| (upper_bound(*i).min(self.max_ms).max(self.min_ms), *n))
    }

    /// Share of values above `ms`, counting a bucket that straddles it as
    /// above (conservative).
    pub fn share_above(&self, ms: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let above: u64 = self
            .buckets
            .iter()
            .filter(|(i, _)| upper_bound(**i) > ms)
            .map(|(_, n)| n)
            .sum();
        above as f64 / self.count as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_one_bucket_above() {
        let mut h = Histo::new();
        for v in 1..=10_000 {
            h.record(f64::from(v));
        }
        for (q, exact) in [(0.5, 5000.0), (0.95, 9500.0), (0.99, 9900.0)] {
            let got = h.quantile(q).unwrap_or_default();
            assert!(got >= exact && got <= exact * RATIO, "q{q}: {got}");
        }
        assert_eq!(h.quantile(1.0), Some(10_000.0));
        assert_eq!(h.quantile(0.0), Some(1.0));
        assert_eq!(h.count, 10_000);
        assert_eq!(Histo::new().quantile(0.5), None);
    }

    #[test]
    fn merge_equals_recording_all() {
        let (mut a, mut b, mut all) = (Histo::new(), Histo::new(), Histo::new());
        for v in 0..500 {
            let x = f64::from(v) * 13.7;
            if v % 3 == 0 { &mut a } else { &mut b }.record(x);
            all.record(x);
        }
        a.merge(&b);
        assert_eq!(a.buckets, all.buckets);
        assert_eq!(a.count, all.count);
        assert!((a.sum_ms - all.sum_ms).abs() < 1e-6);
        assert_eq!((a.min_ms, a.max_ms), (all.min_ms, all.max_ms));
    }

    #[test]
    fn shifting_moves_quantiles_by_the_shift() {
        let mut ages = Histo::new();
        for v in 0..1000 {
            ages.record(f64::from(v) * 3.0);
        }
        let lat = ages.shifted(2000.0);
        let p95 = lat.quantile(0.95).unwrap_or_default();
        let exact = 2850.0 + 2000.0;
        assert!(p95 >= exact * 0.96 && p95 <= exact * RATIO * RATIO, "{p95}");
        assert_eq!((lat.min_ms, lat.max_ms), (2000.0, 2997.0 + 2000.0));
        assert!(lat.share_above(30_000.0) == 0.0 && lat.share_above(1000.0) == 1.0);
    }

    #[test]
    fn bounds_are_monotonic() {
        for ms in [0.5, 1.0, 1.04, 1.05, 100.0, 30_000.0, 3.6e6] {
            let i = index(ms);
            assert!(upper_bound(i) >= ms * 0.999_999, "{ms}");
            assert!(i == 0 || upper_bound(i - 1) < ms, "{ms}");
        }
    }
}
