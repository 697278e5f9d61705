//! The performance guide's KPI table, with its thresholds (configurable,
//! `[kpi]`), and its evaluation: pass when a KPI meets its target, warn when
//! it misses the target but not the critical threshold, fail past the
//! critical threshold; no data is neither.

use serde::{Deserialize, Serialize};

use crate::catalog::Direction;
use crate::histo::Histo;

/// Target and critical threshold of every KPI (`[kpi]` in the
/// configuration). Success rates are shares (0.999 is 99.9%).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// End-to-end latency P95, seconds: target.
    pub e2e_p95_target_s: f64,
    /// End-to-end latency P95, seconds: critical.
    pub e2e_p95_critical_s: f64,
    /// Forwarder (PutRecords) success rate: target.
    pub forwarder_success_target: f64,
    /// Forwarder success rate: critical.
    pub forwarder_success_critical: f64,
    /// Tenant stream processing lag (largest shard's IteratorAge), seconds:
    /// target.
    pub stream_lag_target_s: f64,
    /// Stream lag, seconds: critical.
    pub stream_lag_critical_s: f64,
    /// Cross-cloud transfer (export upload) success rate: target.
    pub transfer_success_target: f64,
    /// Transfer success rate: critical.
    pub transfer_success_critical: f64,
    /// BigQuery load success rate: target.
    pub load_success_target: f64,
    /// Load success rate: critical.
    pub load_success_critical: f64,
    /// Daily cost per million records, USD: target.
    pub cost_per_million_target_usd: f64,
    /// Daily cost per million records, USD: critical.
    pub cost_per_million_critical_usd: f64,
}

impl Default for Thresholds {
    /// The guide's KPI table.
    fn default() -> Self {
        Thresholds {
            e2e_p95_target_s: 30.0,
            e2e_p95_critical_s: 60.0,
            forwarder_success_target: 0.999,
            forwarder_success_critical: 0.99,
            stream_lag_target_s: 1.0,
            stream_lag_critical_s: 5.0,
            transfer_success_target: 0.995,
            transfer_success_critical: 0.99,
            load_success_target: 0.999,
            load_success_critical: 0.99,
            cost_per_million_target_usd: 50.0,
            cost_per_million_critical_usd: 100.0,
        }
    }
}

/// One KPI of the guide's table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KpiDef {
    /// Short name (metric label, JSON key).
    pub id: &'static str,
    /// As the guide names it.
    pub name: &'static str,
    /// Unit of the value.
    pub unit: &'static str,
    /// Good side.
    pub direction: Direction,
    /// Target.
    pub target: f64,
    /// Critical threshold.
    pub critical: f64,
}

/// The KPI table with these thresholds.
pub fn table(t: &Thresholds) -> Vec<KpiDef> {
    use Direction::{Above, Below};
    vec![
        KpiDef {
            id: "e2e_latency_p95",
            name: "End-to-End Latency (P95)",
            unit: "s",
            direction: Below,
            target: t.e2e_p95_target_s,
            critical: t.e2e_p95_critical_s,
        },
        KpiDef {
            id: "forwarder_success",
            name: "Client Log Forwarder Success Rate",
            unit: "ratio",
            direction: Above,
            target: t.forwarder_success_target,
            critical: t.forwarder_success_critical,
        },
        KpiDef {
            id: "stream_lag",
            name: "Tenant Stream Processing Lag",
            unit: "s",
            direction: Below,
            target: t.stream_lag_target_s,
            critical: t.stream_lag_critical_s,
        },
        KpiDef {
            id: "transfer_success",
            name: "Cross-Cloud Transfer Success",
            unit: "ratio",
            direction: Above,
            target: t.transfer_success_target,
            critical: t.transfer_success_critical,
        },
        KpiDef {
            id: "load_success",
            name: "BigQuery Insert Success",
            unit: "ratio",
            direction: Above,
            target: t.load_success_target,
            critical: t.load_success_critical,
        },
        KpiDef {
            id: "cost_per_million",
            name: "Daily Cost per Million Records",
            unit: "USD",
            direction: Below,
            target: t.cost_per_million_target_usd,
            critical: t.cost_per_million_critical_usd,
        },
    ]
}

/// How a KPI stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KpiStatus {
    /// Nothing measured it in the range.
    NoData,
    /// Meets its target.
    Pass,
    /// Misses its target, within its critical threshold.
    Warn,
    /// Past its critical threshold.
    Fail,
}

impl KpiStatus {
    /// `pass`, `warn`, `fail`, `n/a`.
    pub fn as_str(self) -> &'static str {
        match self {
            KpiStatus::NoData => "n/a",
            KpiStatus::Pass => "pass",
            KpiStatus::Warn => "warn",
            KpiStatus::Fail => "fail",
        }
    }

    /// The `logferry_kpi_status` gauge value.
    pub fn gauge(self) -> i64 {
        match self {
            KpiStatus::NoData => -1,
            KpiStatus::Pass => 0,
            KpiStatus::Warn => 1,
            KpiStatus::Fail => 2,
        }
    }
}

/// What the KPIs are computed from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KpiInputs {
    /// Event time to queryable, every record in the range.
    pub e2e: Histo,
    /// PutRecords (records ok, records attempted).
    pub put_records: Option<(u64, u64)>,
    /// Largest source lag seen, ms.
    pub stream_lag_ms: Option<f64>,
    /// Export uploads (ok, attempted).
    pub transfer: Option<(u64, u64)>,
    /// Load jobs (ok, attempted).
    pub loads: Option<(u64, u64)>,
    /// Cost per million records over the range, USD.
    pub cost_per_million_usd: Option<f64>,
}

/// One KPI's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiResult {
    /// Short name.
    pub id: String,
    /// The guide's name.
    pub name: String,
    /// The value (in `unit`), when measured.
    pub value: Option<f64>,
    /// Unit.
    pub unit: String,
    /// Target, e.g. `< 30 s`.
    pub target: String,
    /// Critical threshold, e.g. `< 60 s`.
    pub critical: String,
    /// Where it stands.
    pub status: KpiStatus,
    /// What it was computed from.
    pub basis: String,
}

fn bound(d: &KpiDef, v: f64) -> String {
    let op = match d.direction {
        Direction::Below => "<",
        Direction::Above => ">",
    };
    match d.unit {
        "ratio" => format!("{op} {}%", trim(v * 100.0)),
        "USD" => format!("{op} ${}", trim(v)),
        u => format!("{op} {} {u}", trim(v)),
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Where `value` stands against `d`.
pub fn status(d: &KpiDef, value: Option<f64>) -> KpiStatus {
    let Some(v) = value else {
        return KpiStatus::NoData;
    };
    let (meets, within) = match d.direction {
        Direction::Below => (v < d.target, v < d.critical),
        Direction::Above => (v > d.target, v > d.critical),
    };
    if meets {
        KpiStatus::Pass
    } else if within {
        KpiStatus::Warn
    } else {
        KpiStatus::Fail
    }
}

fn rate(r: Option<(u64, u64)>) -> (Option<f64>, String) {
    match r {
        Some((ok, n)) if n > 0 => (Some(ok as f64 / n as f64), format!("{ok} of {n}")),
        _ => (None, "none attempted".into()),
    }
}

/// Evaluates every KPI.
pub fn evaluate(inputs: &KpiInputs, t: &Thresholds) -> Vec<KpiResult> {
    table(t)
        .into_iter()
        .map(|d| {
            let (value, basis) = match d.id {
                "e2e_latency_p95" => (
                    inputs.e2e.quantile(0.95).map(|ms| ms / 1000.0),
                    format!("{} records", inputs.e2e.count),
                ),
                "forwarder_success" => rate(inputs.put_records),
                "stream_lag" => (
                    inputs.stream_lag_ms.map(|ms| ms / 1000.0),
                    match inputs.stream_lag_ms {
                        Some(_) => "largest shard lag seen".into(),
                        None => "no stream read".into(),
                    },
                ),
                "transfer_success" => rate(inputs.transfer),
                "load_success" => rate(inputs.loads),
                _ => (
                    inputs.cost_per_million_usd,
                    match inputs.cost_per_million_usd {
                        Some(_) => "logferry cost".into(),
                        None => "no records".into(),
                    },
                ),
            };
            KpiResult {
                id: d.id.into(),
                name: d.name.into(),
                value,
                unit: d.unit.into(),
                target: bound(&d, d.target),
                critical: bound(&d, d.critical),
                status: status(&d, value),
                basis,
            }
        })
        .collect()
}

/// The value as a person reads it.
pub fn display(r: &KpiResult) -> String {
    match (r.value, r.unit.as_str()) {
        (None, _) => "-".into(),
        (Some(v), "ratio") => format!("{}%", trim(v * 100.0)),
        (Some(v), "USD") => format!("${v:.4}"),
        (Some(v), u) => format!("{} {u}", trim(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_warn_fail_and_no_data() {
        let t = Thresholds::default();
        let mut e2e = Histo::new();
        for _ in 0..100 {
            e2e.record(45_000.0);
        }
        let r = evaluate(
            &KpiInputs {
                e2e,
                put_records: Some((995, 1000)),
                stream_lag_ms: Some(200.0),
                transfer: Some((98, 100)),
                loads: None,
                cost_per_million_usd: Some(0.5),
            },
            &t,
        );
        let by: Vec<(&str, KpiStatus)> = r.iter().map(|k| (k.id.as_str(), k.status)).collect();
        assert_eq!(
            by,
            vec![
                ("e2e_latency_p95", KpiStatus::Warn),
                ("forwarder_success", KpiStatus::Warn),
                ("stream_lag", KpiStatus::Pass),
                ("transfer_success", KpiStatus::Fail),
                ("load_success", KpiStatus::NoData),
                ("cost_per_million", KpiStatus::Pass),
            ]
        );
        assert_eq!(r[0].target, "< 30 s");
        assert_eq!(r[1].target, "> 99.9%");
        assert_eq!(r[5].critical, "< $100");
    }
}
