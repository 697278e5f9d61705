//! What the pipeline costs per million records, from its own counts and the
//! list prices of `[cost.prices]` (in the default configuration, each with
//! its source and the date it was read; override any of them), beside what
//! the same rows would cost loaded into BigQuery through legacy streaming
//! inserts or the Storage Write API instead of load jobs.
//!
//! The alternatives ship what they insert: JSON rows over the transit link
//! (uncompressed), where load jobs ship compressed Parquet. Everything else
//! (Kinesis, S3, Lambda, storage) is the same for the three, so the
//! comparison is of the BigQuery ingestion and the egress it needs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One list price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// US dollars per `per`.
    pub usd: f64,
    /// What the price is for, e.g. `1000 requests`, `GB-month`.
    pub per: String,
    /// Where it was read.
    pub source: String,
    /// When it was read, YYYY-MM-DD.
    pub as_of: String,
}

/// `[cost]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostConfig {
    /// Memory of the Lambda functions the pipeline's work is priced on, MB.
    pub lambda_memory_mb: u64,
    /// Shards per tenant stream, when the streams are not read (the
    /// embedded default): what a deployment would provision.
    pub shards_per_stream: u64,
    /// List prices by item.
    pub prices: BTreeMap<String, Price>,
}

/// The price items the model uses; each must be in `[cost.prices]`.
pub const ITEMS: &[&str] = &[
    "kinesis_shard_hour",
    "kinesis_put_payload_units",
    "lambda_gb_second",
    "lambda_requests",
    "s3_put_requests",
    "s3_get_requests",
    "s3_storage",
    "transit_egress",
    "gcs_class_a",
    "gcs_class_b",
    "gcs_storage",
    "bigquery_load_jobs",
    "bigquery_storage",
    "bigquery_streaming_inserts",
    "bigquery_storage_write_api",
];

impl CostConfig {
    /// An error naming a missing or negative price.
    pub fn validate(&self) -> Result<(), String> {
        for i in ITEMS {
            match self.prices.get(*i) {
                None => return Err(format!("cost.prices.{i} is missing")),
                Some(p) if !(p.usd >= 0.0 && p.usd.is_finite()) => {
                    return Err(format!(
                        "cost.prices.{i}.usd must be a price, not {}",
                        p.usd
                    ));
                }
                Some(_) => {}
            }
        }
        if self.lambda_memory_mb == 0 {
            return Err("cost.lambda_memory_mb must be positive".into());
        }
        Ok(())
    }

    fn usd(&self, item: &str) -> f64 {
        self.prices.get(item).map_or(0.0, |p| p.usd)
    }
}

/// What the pipeline did over a range, as counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Length of the range, hours.
    pub hours: f64,
    /// Records received.
    pub records: u64,
    /// Rows loaded into the warehouse's log table.
    pub rows_loaded: u64,
    /// Bytes received (the records as they arrived: JSON).
    pub input_bytes: u64,
    /// Kinesis shards provisioned for the tenants' streams.
    pub shards: u64,
    /// Kinesis records put (25 KB payload units each, rounded up).
    pub kinesis_records: u64,
    /// Bytes of the Kinesis records put.
    pub kinesis_bytes: u64,
    /// Lake object writes (landing, DLQ, curated, rollups, ledger).
    pub s3_puts: u64,
    /// Lake object reads and listings.
    pub s3_gets: u64,
    /// Bytes the lake holds.
    pub lake_bytes: u64,
    /// Bytes over the transit link.
    pub egress_bytes: u64,
    /// Objects uploaded to the export bucket.
    pub gcs_uploads: u64,
    /// Export objects read by load jobs.
    pub gcs_reads: u64,
    /// Bytes the export bucket holds.
    pub export_bytes: u64,
    /// Load jobs run.
    pub load_jobs: u64,
    /// Logical bytes the warehouse holds (uncompressed).
    pub warehouse_bytes: u64,
    /// Seconds of work (forward, aggregate, export), priced as Lambda.
    pub compute_seconds: f64,
    /// Invocations that work would take on Lambda.
    pub invocations: u64,
}

/// One priced item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostLine {
    /// Price item.
    pub item: String,
    /// Quantity, in `unit`.
    pub quantity: f64,
    /// Unit of the quantity.
    pub unit: String,
    /// The list price applied.
    pub price: String,
    /// US dollars over the range.
    pub usd: f64,
    /// US dollars per million records.
    pub per_million_usd: f64,
}

/// An alternative BigQuery ingestion for the same rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alternative {
    /// Its name.
    pub name: String,
    /// Its ingestion charge, USD over the range.
    pub ingestion_usd: f64,
    /// Egress of the rows it ships (JSON), USD over the range.
    pub egress_usd: f64,
    /// The whole pipeline with this ingestion instead of load jobs, per
    /// million records.
    pub per_million_usd: f64,
}

/// The cost of a range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostReport {
    /// What was counted.
    pub usage: Usage,
    /// Per item.
    pub lines: Vec<CostLine>,
    /// US dollars over the range.
    pub total_usd: f64,
    /// US dollars per million records received.
    pub per_million_usd: Option<f64>,
    /// Per day at the range's rate.
    pub per_day_usd: f64,
    /// The same rows through the alternatives.
    pub alternatives: Vec<Alternative>,
}

const GB: f64 = 1e9;
const GIB: f64 = (1u64 << 30) as f64;
const HOURS_PER_MONTH: f64 = 730.0;

/// Prices `u`.
pub fn compute(u: &Usage, c: &CostConfig) -> CostReport {
    let months = u.hours / HOURS_PER_MONTH;
    // Each record is at least one 25 KB unit.
    let put_units = u.kinesis_records.max(u.kinesis_bytes.div_ceil(25_000));
    let gb_seconds = u.compute_seconds * c.lambda_memory_mb as f64 / 1024.0;
    let quantities: Vec<(&str, f64, &str, f64)> = vec![
        // (item, quantity, its unit, multiplier to the price's unit)
        (
            "kinesis_shard_hour",
            u.shards as f64 * u.hours,
            "shard-hours",
            1.0,
        ),
        (
            "kinesis_put_payload_units",
            put_units as f64,
            "PUT payload units",
            1e-6,
        ),
        ("lambda_gb_second", gb_seconds, "GB-seconds", 1.0),
        ("lambda_requests", u.invocations as f64, "requests", 1e-6),
        ("s3_put_requests", u.s3_puts as f64, "requests", 1e-3),
        ("s3_get_requests", u.s3_gets as f64, "requests", 1e-3),
        (
            "s3_storage",
            u.lake_bytes as f64 / GB * months,
            "GB-months",
            1.0,
        ),
        ("transit_egress", u.egress_bytes as f64 / GB, "GB", 1.0),
        ("gcs_class_a", u.gcs_uploads as f64, "operations", 1e-3),
        ("gcs_class_b", u.gcs_reads as f64, "operations", 1e-3),
        (
            "gcs_storage",
            u.export_bytes as f64 / GB * months,
            "GB-months",
            1.0,
        ),
        ("bigquery_load_jobs", u.load_jobs as f64, "load jobs", 1.0),
        (
            "bigquery_storage",
            u.warehouse_bytes as f64 / GIB * months,
            "GiB-months",
            1.0,
        ),
    ];
    let per_million = |usd: f64| {
        if u.records == 0 {
            0.0
        } else {
            usd / u.records as f64 * 1e6
        }
    };
    let lines: Vec<CostLine> = quantities
        .into_iter()
        .map(|(item, q, unit, mult)| {
            let usd = q * mult * c.usd(item);
            CostLine {
                item: item.into(),
                quantity: q,
                unit: unit.into(),
                price: c
                    .prices
                    .get(item)
                    .map_or(String::new(), |p| format!("${} per {}", p.usd, p.per)),
                usd,
                per_million_usd: per_million(usd),
            }
        })
        .collect();
    let total: f64 = lines.iter().map(|l| l.usd).sum();
    let egress_now = lines
        .iter()
        .find(|l| l.item == "transit_egress")
        .map_or(0.0, |l| l.usd);
    // The rows as JSON: what the alternatives would ship and insert.
    let json_bytes = if u.records == 0 {
        0.0
    } else {
        u.input_bytes as f64 * u.rows_loaded as f64 / u.records as f64
    };
    let json_egress = json_bytes / GB * c.usd("transit_egress");
    // Legacy streaming inserts: each row billed as at least 1 KB, per 200 MB.
    let avg_row = if u.rows_loaded == 0 {
        0.0
    } else {
        json_bytes / u.rows_loaded as f64
    };
    let billed = u.rows_loaded as f64 * avg_row.max(1024.0);
    let streaming = billed / (200.0 * 1024.0 * 1024.0) * c.usd("bigquery_streaming_inserts");
    // Storage Write API: per GiB past the monthly free 2 TiB (prorated).
    let free = 2048.0 * GIB * months;
    let write_api = ((json_bytes - free).max(0.0)) / GIB * c.usd("bigquery_storage_write_api");
    let alternatives = [
        ("BigQuery streaming inserts (legacy)", streaming),
        ("BigQuery Storage Write API", write_api),
    ]
    .into_iter()
    .map(|(name, ingestion)| Alternative {
        name: name.into(),
        ingestion_usd: ingestion,
        egress_usd: json_egress,
        per_million_usd: per_million(total - egress_now + json_egress + ingestion),
    })
    .collect();
    CostReport {
        usage: u.clone(),
        total_usd: total,
        per_million_usd: (u.records > 0).then(|| per_million(total)),
        per_day_usd: if u.hours > 0.0 {
            total / u.hours * 24.0
        } else {
            0.0
        },
        lines,
        alternatives,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> CostConfig {
        let mut prices = BTreeMap::new();
        for (i, usd) in [
            ("kinesis_shard_hour", 0.015),
            ("kinesis_put_payload_units", 0.014),
            ("lambda_gb_second", 0.000_016_666_7),
            ("lambda_requests", 0.2),
            ("s3_put_requests", 0.005),
            ("s3_get_requests", 0.0004),
            ("s3_storage", 0.023),
            ("transit_egress", 0.09),
            ("gcs_class_a", 0.005),
            ("gcs_class_b", 0.0004),
            ("gcs_storage", 0.02),
            ("bigquery_load_jobs", 0.0),
            ("bigquery_storage", 0.02),
            ("bigquery_streaming_inserts", 0.01),
            ("bigquery_storage_write_api", 0.025),
        ] {
            prices.insert(
                i.to_string(),
                Price {
                    usd,
                    per: "unit".into(),
                    source: "test".into(),
                    as_of: "2026-12-01".into(),
                },
            );
        }
        CostConfig {
            lambda_memory_mb: 1024,
            shards_per_stream: 1,
            prices,
        }
    }

    #[test]
    fn a_million_small_rows() {
        let u = Usage {
            hours: 24.0,
            records: 1_000_000,
            rows_loaded: 1_000_000,
            input_bytes: 500_000_000,
            egress_bytes: 50_000_000,
            load_jobs: 24,
            ..Usage::default()
        };
        let r = compute(&u, &config());
        assert!(config().validate().is_ok());
        // 50 MB over the link at $0.09/GB.
        assert!((r.total_usd - 0.0045).abs() < 1e-9, "{}", r.total_usd);
        assert_eq!(r.per_million_usd, Some(r.total_usd));
        // Streaming: 1M rows billed at 1 KB each = 976.6 MiB → $0.0488;
        // plus 500 MB of JSON egress ($0.045) instead of 50 MB.
        let s = &r.alternatives[0];
        assert!((s.ingestion_usd - 0.048_828_125).abs() < 1e-9, "{s:?}");
        assert!((s.per_million_usd - (0.045 + 0.048_828_125)).abs() < 1e-9);
        // The Write API's free tier covers a day of 500 MB.
        assert_eq!(r.alternatives[1].ingestion_usd, 0.0);
        assert!(
            r.alternatives
                .iter()
                .all(|a| a.per_million_usd > r.total_usd)
        );
    }

    #[test]
    fn a_missing_price_is_named() {
        let mut c = config();
        c.prices.remove("s3_storage");
        assert_eq!(
            c.validate(),
            Err("cost.prices.s3_storage is missing".into())
        );
    }
}
