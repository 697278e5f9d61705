//! Configuration: the built-in defaults, a TOML file and `LOGFERRY__A__B`
//! environment overrides, merged and then validated once into [`Settings`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::partition::TenantId;

/// The built-in configuration, also the reference for every key.
pub const DEFAULT_TOML: &str = include_str!("../default.toml");

/// Prefix of environment overrides: `LOGFERRY__FORWARD__MAX_AGE=7d`.
pub const ENV_PREFIX: &str = "LOGFERRY__";

/// Config file name looked for in the data directory when no file is given.
pub const DATA_DIR_CONFIG: &str = "logferry.toml";

/// Environment variables of other tools' conventions that the configuration
/// honours: the Google client libraries' emulator hosts and the BigQuery
/// project and dataset.
pub const EXTERNAL_ENV: [&str; 4] = [
    "STORAGE_EMULATOR_HOST",
    "BIGQUERY_EMULATOR_HOST",
    "BIGQUERY_PROJECT",
    "BIGQUERY_DATASET",
];

/// The configuration as written (see `default.toml` for every key's meaning).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the lake and the export store live.
    pub storage: StorageConfig,
    /// S3 and Kinesis.
    pub aws: AwsConfig,
    /// The Kinesis source.
    pub kinesis: KinesisConfig,
    /// The GCS export store.
    pub gcs: GcsConfig,
    /// The BigQuery warehouse.
    pub bigquery: BigQueryConfig,
    /// Decoding, validation and micro-batching at the edge.
    pub forward: ForwardConfig,
    /// Parquet encoding shared by every stage.
    pub parquet: ParquetConfig,
    /// The ledger's leases.
    pub ledger: LedgerConfig,
    /// The SQL program of the aggregate stage.
    pub aggregate: AggregateConfig,
    /// A Ballista cluster for ad-hoc SQL.
    pub cluster: ClusterConfig,
    /// What `logferry deploy render` writes for AWS and GCP.
    pub deploy: DeployConfig,
    /// The warehouse the export stage loads.
    pub warehouse: WarehouseConfig,
    /// Retries of failed windows.
    pub run: RunConfig,
    /// The daemon.
    pub daemon: DaemonConfig,
    /// EMF lines.
    pub metrics: MetricsConfig,
    /// The KPI thresholds.
    pub kpi: logferry_observe::Thresholds,
    /// Prices of the cost model.
    pub cost: logferry_observe::cost::CostConfig,
    /// What the daemon runs, and when.
    #[serde(default, rename = "schedule")]
    pub schedules: Vec<crate::schedule::ScheduleConfig>,
    /// Tenants and the sources that belong to them.
    #[serde(default, rename = "tenant")]
    pub tenants: Vec<TenantConfig>,
    /// Values of [`EXTERNAL_ENV`] variables seen at load time.
    #[serde(skip)]
    pub external_env: std::collections::BTreeMap<String, String>,
}

/// `[run]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Failed attempts before a window is `failed`.
    pub max_attempts: u32,
    /// Wait before the second attempt.
    pub retry_backoff: String,
    /// Longest wait between attempts.
    pub retry_backoff_max: String,
}

/// `[daemon]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Address of the health and metrics endpoints.
    pub listen: String,
    /// Follow the tenants' Kinesis streams.
    pub kinesis: bool,
    /// Inbox URL; empty means `<data-dir>/inbox`.
    pub inbox: String,
    /// Inbox listing interval.
    pub inbox_interval: String,
    /// Time given to work in progress on SIGTERM.
    pub shutdown_deadline: String,
    /// First restart delay of a failed stream reader.
    pub restart_backoff: String,
    /// Longest restart delay.
    pub restart_backoff_max: String,
    /// Memory for open windows' keys.
    pub key_cache_bytes: usize,
    /// The memory the process is allowed, bytes.
    pub memory_budget: u64,
    /// Sliding window of the quantile and KPI gauges.
    pub metrics_window: String,
}

/// `[metrics]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// CloudWatch namespace of the EMF lines.
    pub namespace: String,
    /// The Environment dimension.
    pub environment: String,
}

/// `[ledger]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    /// Lease lifetime of windows and days.
    pub lease_ttl: String,
}

/// `[aws]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// Region; empty for the standard chain.
    pub region: String,
    /// Endpoint override; empty for the standard chain.
    pub endpoint: String,
    /// Allow http endpoints.
    pub allow_http: bool,
    /// Objects above this size go up in parts.
    pub multipart_threshold: usize,
    /// Attempts per S3 or Kinesis call.
    pub max_attempts: u32,
    /// Longest wait for one attempt.
    pub request_timeout: String,
    /// Longest time one call spends retrying.
    pub retry_budget: String,
}

/// `[kinesis]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KinesisConfig {
    /// `trim_horizon` or `latest`.
    pub start: String,
    /// Records per GetRecords call.
    pub max_records_per_call: i32,
    /// Least time between calls on one shard.
    pub min_call_interval: String,
    /// Read budget per shard, bytes per second.
    pub max_bytes_per_second: u64,
    /// Pause on a caught-up shard.
    pub idle_interval: String,
    /// Lease lifetime of a shard.
    pub lease_ttl: String,
}

/// `[gcs]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcsConfig {
    /// Endpoint; empty for Google's.
    pub endpoint: String,
    /// No credentials (emulators).
    pub anonymous: bool,
    /// Uploads in flight.
    pub parallel_uploads: usize,
    /// Bandwidth cap, bytes per second; 0 for none.
    pub max_bytes_per_second: u64,
    /// Attempts per upload.
    pub max_attempts: u32,
    /// Longest wait for one attempt.
    pub request_timeout: String,
    /// Longest time one call spends retrying.
    pub retry_budget: String,
}

/// `[bigquery]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BigQueryConfig {
    /// Project.
    pub project: String,
    /// Dataset.
    pub dataset: String,
    /// Location.
    pub location: String,
    /// API root.
    pub endpoint: String,
    /// No credentials (emulators).
    pub anonymous: bool,
    /// Service account key file.
    pub credentials: String,
    /// Partition expiration.
    pub partition_expiration: String,
    /// First poll interval.
    pub poll_initial: String,
    /// Longest poll interval.
    pub poll_max: String,
    /// Longest wait for a job.
    pub job_timeout: String,
    /// Count rows after each load.
    pub verify_loads: bool,
    /// Attempts per API call.
    pub max_attempts: u32,
    /// Longest wait for one API call.
    pub request_timeout: String,
    /// Longest time one API call spends retrying.
    pub retry_budget: String,
    /// Load jobs per table per day.
    pub load_jobs_per_table_per_day: u64,
    /// Load jobs per project per day.
    pub load_jobs_per_project_per_day: u64,
    /// Table updates per 10 seconds.
    pub table_updates_per_10s: u32,
    /// Load jobs other writers run per table per day.
    pub other_jobs_per_table_per_day: u64,
    /// Share of the quota kept free.
    pub quota_headroom: f64,
    /// Rows `logferry sql` reads from a table.
    pub sql_max_rows: u64,
}

/// `[storage]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Lake URL; empty means `<data-dir>/lake`.
    pub lake: String,
    /// Export store URL; empty means `<data-dir>/export`.
    pub export: String,
}

/// `[forward]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// NDJSON field naming the arrival stream.
    pub stream_field: String,
    /// Oldest accepted event time, relative to now.
    pub max_age: String,
    /// Latest accepted event time, relative to now.
    pub max_skew: String,
    /// Fixed "now" (RFC 3339) for the range check; empty for the wall clock.
    pub reference_time: String,
    /// Largest message in bytes.
    pub max_message_bytes: usize,
    /// Largest record (line or event) in bytes.
    pub max_record_bytes: usize,
    /// Largest decompressed envelope in bytes.
    pub max_envelope_bytes: usize,
    /// Most events per envelope.
    pub max_envelope_events: usize,
    /// Raw payload bytes kept per dead-letter entry.
    pub dlq_raw_limit: usize,
    /// Records per landing object.
    pub batch_max_records: usize,
    /// Bytes (decoded) per landing object.
    pub batch_max_bytes: usize,
    /// Age of the oldest buffered record before a flush (streaming inputs).
    pub batch_max_age: String,
    /// Bound on all open buffers together.
    pub max_buffered_bytes: usize,
}

/// `[parquet]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetConfig {
    /// zstd level.
    pub zstd_level: i32,
    /// Rows per row group.
    pub row_group_rows: usize,
}

/// `[aggregate]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    /// Directory holding the SQL program; empty for the built-in copy.
    pub sql_dir: String,
    /// Memory pool of the queries, bytes.
    pub memory_limit: u64,
    /// Spill and scratch directory; empty for `<data-dir>/spill`.
    pub spill_dir: String,
    /// Rows per curated or dead-letter object.
    pub object_rows: usize,
    /// zstd level of curated, rollup and dead-letter objects.
    pub zstd_level: i32,
}

/// `[cluster]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Empty (this process), `standalone` or `df://host:port`.
    pub scheduler: String,
}

/// `[deploy]`: the infrastructure `logferry deploy render` writes, beside
/// the tenants and schedules it takes from the rest of the configuration.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeployConfig {
    /// Prefix of every resource name.
    pub name: String,
    /// AWS region of the central account.
    pub aws_region: String,
    /// Expected peak writes per tenant stream, records per second.
    pub records_per_second: f64,
    /// Expected peak writes per tenant stream, bytes per second.
    pub bytes_per_second: f64,
    /// Shards per stream = expected load / a shard's write limit (1,000
    /// records/s, 1 MB/s) times this, rounded up.
    pub shard_headroom: f64,
    /// Per-tenant expected rates where they differ: `id = { records_per_second
    /// = .., bytes_per_second = .. }`.
    #[serde(default)]
    pub tenant_rates: std::collections::BTreeMap<String, TenantRate>,
    /// Days landing objects are kept in the lake (0: for ever).
    pub landing_retention_days: u32,
    /// Days dead letters are kept in the lake (0: for ever).
    pub dlq_retention_days: u32,
    /// Days exported objects are kept in the export bucket (0: for ever).
    pub export_retention_days: u32,
    /// Lambda architecture: "arm64" or "x86_64".
    pub lambda_architecture: String,
    /// Memory of the forwarder, lander and runner functions, MB.
    pub forwarder_memory_mb: u32,
    /// Memory of the lander function, MB.
    pub lander_memory_mb: u32,
    /// Memory of the runner function, MB.
    pub runner_memory_mb: u32,
    /// Google Cloud project of the export bucket and the dataset.
    pub gcp_project: String,
    /// Google Cloud location of the export bucket and the dataset.
    pub gcp_location: String,
}

/// Expected peak writes of one tenant's stream.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TenantRate {
    /// Records per second.
    pub records_per_second: f64,
    /// Bytes per second.
    pub bytes_per_second: f64,
}

impl DeployConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Config(format!("deploy.{what}")));
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return bad("name: lower-case letters, digits and '-'");
        }
        if !["arm64", "x86_64"].contains(&self.lambda_architecture.as_str()) {
            return bad("lambda_architecture: \"arm64\" or \"x86_64\"");
        }
        let rates = std::iter::once((self.records_per_second, self.bytes_per_second)).chain(
            self.tenant_rates
                .values()
                .map(|r| (r.records_per_second, r.bytes_per_second)),
        );
        for (r, b) in rates {
            if !(r.is_finite() && b.is_finite() && r >= 0.0 && b >= 0.0) {
                return bad("records_per_second and bytes_per_second: numbers, 0 or more");
            }
        }
        if !(self.shard_headroom.is_finite() && self.shard_headroom >= 1.0) {
            return bad("shard_headroom: 1 or more");
        }
        for m in [
            self.forwarder_memory_mb,
            self.lander_memory_mb,
            self.runner_memory_mb,
        ] {
            if !(128..=10240).contains(&m) {
                return bad("*_memory_mb: 128 to 10240");
            }
        }
        Ok(())
    }
}

/// Where ad-hoc queries run (validated `[cluster] scheduler`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterTarget {
    /// In this process, on DataFusion.
    Local,
    /// On a Ballista scheduler and executor started in this process.
    Standalone,
    /// On the Ballista scheduler at this `df://host:port` URL.
    Remote(String),
}

impl std::fmt::Display for ClusterTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClusterTarget::Local => f.write_str("\"\""),
            ClusterTarget::Standalone => f.write_str("\"standalone\""),
            ClusterTarget::Remote(url) => write!(f, "{url:?}"),
        }
    }
}

impl ClusterTarget {
    /// Parses `[cluster] scheduler`.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(ClusterTarget::Local);
        }
        if s == "standalone" {
            return Ok(ClusterTarget::Standalone);
        }
        let bad = |why: &str| {
            Error::Config(format!(
                "cluster.scheduler {s:?}: {why}; use \"\" (this process), \"standalone\" or \
                 \"df://host:port\""
            ))
        };
        let rest = s
            .strip_prefix("df://")
            .ok_or_else(|| bad("not a df:// URL"))?;
        let (host, port) = rest
            .trim_end_matches('/')
            .rsplit_once(':')
            .ok_or_else(|| bad("no port"))?;
        if host.is_empty() {
            return Err(bad("no host"));
        }
        port.parse::<u16>()
            .map_err(|_| bad("the port is not a number"))?;
        Ok(ClusterTarget::Remote(format!("df://{host}:{port}")))
    }
}

/// `[warehouse]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarehouseConfig {
    /// Warehouse kind: `local` or `bigquery`.
    pub kind: String,
    /// Location of the local warehouse; empty means `<data-dir>/warehouse`.
    pub path: String,
    /// `hour` or `day`.
    pub partitioning: String,
    /// Lateness allowance of a window and of a day partition.
    pub seal_after: String,
    /// How long a local warehouse keeps replaced objects readable.
    pub snapshot_retention: String,
}

/// One `[[tenant]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Tenant id: `[a-z0-9][a-z0-9-]{0,62}`.
    pub id: String,
    /// Kinesis stream names (and NDJSON `stream` values) of this tenant.
    #[serde(default)]
    pub streams: Vec<String>,
    /// CloudWatch Logs log group prefixes of this tenant.
    #[serde(default)]
    pub log_groups: Vec<String>,
    /// AWS accounts allowed to send for this tenant; empty allows any.
    #[serde(default)]
    pub accounts: Vec<String>,
}

/// Where the merged configuration came from, for messages.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// The file merged over the defaults, if any.
    pub file: Option<PathBuf>,
    /// Environment variables that overrode keys.
    pub env_keys: Vec<String>,
}

impl Config {
    /// Loads defaults, then `file` (if any), then the given environment overrides.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, ConfigSource)> {
        let mut merged: toml::Table = DEFAULT_TOML
            .parse()
            .map_err(|e| Error::Config(format!("built-in defaults: {e}")))?;
        let mut source = ConfigSource::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
            let table: toml::Table = text
                .parse()
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
            merge(&mut merged, table);
            source.file = Some(path.to_path_buf());
        }
        let mut external = std::collections::BTreeMap::new();
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, v)| {
                if EXTERNAL_ENV.contains(&k.as_str()) && !v.is_empty() {
                    external.insert(k.clone(), v.clone());
                }
                k.starts_with(ENV_PREFIX)
            })
            .collect();
        env.sort();
        for (key, value) in env {
            apply_env(&mut merged, &key, &value)?;
            source.env_keys.push(key);
        }
        let mut config = Config::deserialize(toml::Value::Table(merged)).map_err(|e| {
            Error::Config(format!(
                "{}: {e}",
                source
                    .file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "configuration".into())
            ))
        })?;
        config.external_env = external;
        Ok((config, source))
    }

    /// Validates the configuration against a data directory.
    pub fn validate(self, data_dir: &Path) -> Result<Settings> {
        let f = &self.forward;
        let reference_time = if f.reference_time.trim().is_empty() {
            None
        } else {
            Some(
                DateTime::parse_from_rfc3339(f.reference_time.trim())
                    .map_err(|e| {
                        Error::Config(format!(
                            "forward.reference_time {:?} is not RFC 3339: {e}",
                            f.reference_time
                        ))
                    })?
                    .with_timezone(&Utc),
            )
        };
        let positive = |name: &str, v: usize| -> Result<usize> {
            if v == 0 {
                Err(Error::Config(format!("{name} must be greater than 0")))
            } else {
                Ok(v)
            }
        };
        let forward = ForwardSettings {
            stream_field: non_empty("forward.stream_field", &f.stream_field)?,
            max_age: parse_duration("forward.max_age", &f.max_age)?,
            max_skew: parse_duration("forward.max_skew", &f.max_skew)?,
            reference_time,
            max_message_bytes: positive("forward.max_message_bytes", f.max_message_bytes)?,
            max_record_bytes: positive("forward.max_record_bytes", f.max_record_bytes)?,
            max_envelope_bytes: positive("forward.max_envelope_bytes", f.max_envelope_bytes)?,
            max_envelope_events: positive("forward.max_envelope_events", f.max_envelope_events)?,
            dlq_raw_limit: f.dlq_raw_limit,
            batch_max_records: positive("forward.batch_max_records", f.batch_max_records)?,
            batch_max_bytes: positive("forward.batch_max_bytes", f.batch_max_bytes)?,
            batch_max_age: parse_duration("forward.batch_max_age", &f.batch_max_age)?,
            max_buffered_bytes: positive("forward.max_buffered_bytes", f.max_buffered_bytes)?,
        };
        if !(1..=22).contains(&self.parquet.zstd_level) {
            return Err(Error::Config(format!(
                "parquet.zstd_level must be 1..=22, got {}",
                self.parquet.zstd_level
            )));
        }
        let parquet = ParquetSettings {
            zstd_level: self.parquet.zstd_level,
            row_group_rows: positive("parquet.row_group_rows", self.parquet.row_group_rows)?,
        };
        let location = |value: &str, default: &str| -> String {
            if value.trim().is_empty() {
                data_dir.join(default).display().to_string()
            } else {
                value.trim().to_string()
            }
        };
        let env = |k: &str| self.external_env.get(k).cloned();
        let partitioning = match self.warehouse.partitioning.as_str() {
            "hour" => Partitioning::Hour,
            "day" => Partitioning::Day,
            other => {
                return Err(Error::Config(format!(
                    "warehouse.partitioning {other:?}: use \"hour\" or \"day\""
                )));
            }
        };
        let seal_after = parse_duration("warehouse.seal_after", &self.warehouse.seal_after)?;
        let export_url = location(&self.storage.export, "export");
        let warehouse = match self.warehouse.kind.as_str() {
            "local" => WarehouseSettings::Local {
                url: location(&self.warehouse.path, "warehouse"),
            },
            "bigquery" => {
                let b = &self.bigquery;
                if !export_url.starts_with("gs://") {
                    return Err(Error::Config(format!(
                        "warehouse.kind = \"bigquery\" loads from GCS: storage.export must be a \
                         gs:// URL, not {export_url:?}"
                    )));
                }
                let project =
                    non_empty_or(&b.project, env("BIGQUERY_PROJECT")).ok_or_else(|| {
                        Error::Config(
                            "bigquery.project is empty and BIGQUERY_PROJECT is not set".into(),
                        )
                    })?;
                let dataset = non_empty_or(&b.dataset, env("BIGQUERY_DATASET"))
                    .unwrap_or_else(|| "logferry".into());
                let (endpoint, authenticate) = match non_empty_or(&b.endpoint, None) {
                    Some(e) => (e, !b.anonymous),
                    None => match env("BIGQUERY_EMULATOR_HOST") {
                        Some(h) => (emulator_url(&h, "/bigquery/v2"), false),
                        None => ("https://bigquery.googleapis.com/bigquery/v2".into(), true),
                    },
                };
                let expiration = if b.partition_expiration.trim().is_empty() {
                    None
                } else {
                    Some(parse_duration(
                        "bigquery.partition_expiration",
                        &b.partition_expiration,
                    )?)
                };
                if partitioning == Partitioning::Hour
                    && expiration.is_none_or(|e| e.as_secs() / 3600 >= MAX_PARTITIONS)
                {
                    return Err(Error::Config(format!(
                        "hourly partitioning keeps one partition per hour and BigQuery allows \
                         {MAX_PARTITIONS} per table: set bigquery.partition_expiration under \
                         {} days, or use warehouse.partitioning = \"day\"",
                        MAX_PARTITIONS / 24
                    )));
                }
                if !is_bq_name(&dataset) {
                    return Err(Error::Config(format!(
                        "bigquery.dataset {dataset:?} must be letters, digits and _ (at most 1024)"
                    )));
                }
                WarehouseSettings::BigQuery(Box::new(BigQuerySettings {
                    project,
                    dataset,
                    location: b.location.trim().to_string(),
                    endpoint,
                    authenticate,
                    credentials: non_empty_or(&b.credentials, None).map(PathBuf::from),
                    partition_expiration: expiration,
                    poll_initial: parse_duration("bigquery.poll_initial", &b.poll_initial)?,
                    poll_max: parse_duration("bigquery.poll_max", &b.poll_max)?,
                    job_timeout: parse_duration("bigquery.job_timeout", &b.job_timeout)?,
                    verify_loads: b.verify_loads,
                    max_attempts: b.max_attempts.max(1),
                    request_timeout: parse_duration(
                        "bigquery.request_timeout",
                        &b.request_timeout,
                    )?,
                    retry_budget: parse_duration("bigquery.retry_budget", &b.retry_budget)?,
                    quotas: {
                        if !(0.0..0.9).contains(&b.quota_headroom) {
                            return Err(Error::Config(format!(
                                "bigquery.quota_headroom must be in 0.0..0.9, got {}",
                                b.quota_headroom
                            )));
                        }
                        LoadQuotas {
                            jobs_per_table_per_day: b.load_jobs_per_table_per_day.max(1),
                            jobs_per_project_per_day: b.load_jobs_per_project_per_day.max(1),
                            table_updates_per_10s: b.table_updates_per_10s.max(1),
                            other_jobs_per_table_per_day: b.other_jobs_per_table_per_day,
                            headroom: b.quota_headroom,
                        }
                    },
                    sql_max_rows: b.sql_max_rows.max(1),
                }))
            }
            other => {
                return Err(Error::Config(format!(
                    "warehouse.kind {other:?} is not known; use \"local\" or \"bigquery\""
                )));
            }
        };
        let k = &self.kinesis;
        let kinesis = KinesisSettings {
            start_at_latest: match k.start.as_str() {
                "trim_horizon" => false,
                "latest" => true,
                other => {
                    return Err(Error::Config(format!(
                        "kinesis.start {other:?}: use \"trim_horizon\" or \"latest\""
                    )));
                }
            },
            max_records_per_call: if (1..=10_000).contains(&k.max_records_per_call) {
                k.max_records_per_call
            } else {
                return Err(Error::Config(
                    "kinesis.max_records_per_call must be 1..=10000".into(),
                ));
            },
            min_call_interval: parse_duration("kinesis.min_call_interval", &k.min_call_interval)?,
            max_bytes_per_second: k.max_bytes_per_second.max(1),
            idle_interval: parse_duration("kinesis.idle_interval", &k.idle_interval)?,
            lease_ttl: parse_duration("kinesis.lease_ttl", &k.lease_ttl)?,
        };
        let g = &self.gcs;
        // An endpoint in the configuration wins over the emulator variable.
        let (gcs_endpoint, gcs_anonymous) = match non_empty_or(&g.endpoint, None) {
            Some(e) => (e, g.anonymous),
            None => match env("STORAGE_EMULATOR_HOST") {
                Some(h) => (emulator_url(&h, ""), true),
                None => ("https://storage.googleapis.com".into(), g.anonymous),
            },
        };
        let gcs = GcsSettings {
            endpoint: gcs_endpoint.trim_end_matches('/').to_string(),
            anonymous: gcs_anonymous,
            parallel_uploads: positive("gcs.parallel_uploads", g.parallel_uploads)?,
            max_bytes_per_second: g.max_bytes_per_second,
            max_attempts: g.max_attempts.max(1),
            request_timeout: parse_duration("gcs.request_timeout", &g.request_timeout)?,
            retry_budget: parse_duration("gcs.retry_budget", &g.retry_budget)?,
        };
        let aws = AwsSettings {
            region: non_empty_or(&self.aws.region, None),
            endpoint: non_empty_or(&self.aws.endpoint, None),
            allow_http: self.aws.allow_http,
            multipart_threshold: positive("aws.multipart_threshold", self.aws.multipart_threshold)?,
            max_attempts: self.aws.max_attempts.max(1),
            request_timeout: parse_duration("aws.request_timeout", &self.aws.request_timeout)?,
            retry_budget: parse_duration("aws.retry_budget", &self.aws.retry_budget)?,
        };
        let sql_dir = if self.aggregate.sql_dir.trim().is_empty() {
            None
        } else {
            Some(PathBuf::from(self.aggregate.sql_dir.trim()))
        };
        let a = &self.aggregate;
        let aggregate = AggregateSettings {
            memory_limit: if a.memory_limit >= 32 << 20 {
                a.memory_limit as usize
            } else {
                return Err(Error::Config(format!(
                    "aggregate.memory_limit must be at least 32 MiB (33554432), got {}",
                    a.memory_limit
                )));
            },
            spill_dir: if a.spill_dir.trim().is_empty() {
                data_dir.join("spill")
            } else {
                PathBuf::from(a.spill_dir.trim())
            },
            object_rows: positive("aggregate.object_rows", a.object_rows)?,
            zstd_level: if (1..=22).contains(&a.zstd_level) {
                a.zstd_level
            } else {
                return Err(Error::Config(format!(
                    "aggregate.zstd_level must be 1..=22, got {}",
                    a.zstd_level
                )));
            },
        };
        let r = &self.run;
        let run = RunSettings {
            max_attempts: r.max_attempts.max(1),
            retry_backoff: parse_duration("run.retry_backoff", &r.retry_backoff)?,
            retry_backoff_max: parse_duration("run.retry_backoff_max", &r.retry_backoff_max)?,
        };
        let d = &self.daemon;
        let daemon = DaemonSettings {
            listen: d.listen.trim().parse().map_err(|e| {
                Error::Config(format!(
                    "daemon.listen {:?} is not an address (host:port): {e}",
                    d.listen
                ))
            })?,
            kinesis: d.kinesis,
            inbox_url: location(&d.inbox, "inbox"),
            inbox_interval: parse_duration("daemon.inbox_interval", &d.inbox_interval)?,
            shutdown_deadline: parse_duration("daemon.shutdown_deadline", &d.shutdown_deadline)?,
            restart_backoff: parse_duration("daemon.restart_backoff", &d.restart_backoff)?,
            restart_backoff_max: parse_duration(
                "daemon.restart_backoff_max",
                &d.restart_backoff_max,
            )?,
            key_cache_bytes: d.key_cache_bytes,
            memory_budget: d.memory_budget,
            metrics_window: parse_duration("daemon.metrics_window", &d.metrics_window)?,
        };
        if d.memory_budget == 0 {
            return Err(Error::Config(
                "daemon.memory_budget must be positive".into(),
            ));
        }
        self.cost.validate().map_err(Error::Config)?;
        Ok(Settings {
            data_dir: data_dir.to_path_buf(),
            run,
            daemon,
            schedules: crate::schedule::parse_all(&self.schedules)?,
            snapshot_retention: parse_duration(
                "warehouse.snapshot_retention",
                &self.warehouse.snapshot_retention,
            )?,
            lake_url: location(&self.storage.lake, "lake"),
            export_url,
            forward,
            parquet,
            sql_dir,
            aggregate,
            cluster: ClusterTarget::parse(&self.cluster.scheduler)?,
            deploy: {
                self.deploy.validate()?;
                self.deploy.clone()
            },
            warehouse,
            partitioning,
            seal_after,
            lease_ttl: parse_duration("ledger.lease_ttl", &self.ledger.lease_ttl)?,
            aws,
            kinesis,
            gcs,
            tenants: TenantRegistry::new(&self.tenants)?,
            metrics: self.metrics.clone(),
            kpi: self.kpi,
            cost: self.cost.clone(),
        })
    }
}

/// The validated configuration every job is built from.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Root of the embedded default.
    pub data_dir: PathBuf,
    /// Retries of failed windows.
    pub run: RunSettings,
    /// The daemon.
    pub daemon: DaemonSettings,
    /// The schedules.
    pub schedules: Vec<crate::schedule::Schedule>,
    /// How long a local warehouse keeps replaced objects readable.
    pub snapshot_retention: Duration,
    /// Lake URL.
    pub lake_url: String,
    /// Export store URL.
    pub export_url: String,
    /// Forward settings.
    pub forward: ForwardSettings,
    /// Parquet settings.
    pub parquet: ParquetSettings,
    /// Directory of the SQL program, `None` for the built-in one.
    pub sql_dir: Option<PathBuf>,
    /// Memory and disk of the aggregate's queries.
    pub aggregate: AggregateSettings,
    /// Where ad-hoc queries run.
    pub cluster: ClusterTarget,
    /// `[deploy]`, validated.
    pub deploy: DeployConfig,
    /// Warehouse choice.
    pub warehouse: WarehouseSettings,
    /// Warehouse table partitioning.
    pub partitioning: Partitioning,
    /// Lateness allowance of a day partition.
    pub seal_after: Duration,
    /// Lease lifetime of windows and days.
    pub lease_ttl: Duration,
    /// S3 and Kinesis.
    pub aws: AwsSettings,
    /// The Kinesis source.
    pub kinesis: KinesisSettings,
    /// The GCS export store.
    pub gcs: GcsSettings,
    /// Tenants and their sources.
    pub tenants: TenantRegistry,
    /// EMF lines.
    pub metrics: MetricsConfig,
    /// The KPI thresholds.
    pub kpi: logferry_observe::Thresholds,
    /// Prices of the cost model.
    pub cost: logferry_observe::cost::CostConfig,
}

/// Validated `[aggregate]` limits.
#[derive(Debug, Clone)]
pub struct AggregateSettings {
    /// Bytes DataFusion's memory pool holds at most.
    pub memory_limit: usize,
    /// Where queries spill and scratch files go.
    pub spill_dir: PathBuf,
    /// Rows per curated or dead-letter object.
    pub object_rows: usize,
    /// zstd level of curated, rollup and dead-letter objects.
    pub zstd_level: i32,
}

/// Validated `[run]`.
#[derive(Debug, Clone, Copy)]
pub struct RunSettings {
    /// Failed attempts before a window is `failed`.
    pub max_attempts: u32,
    /// Wait before the second attempt.
    pub retry_backoff: Duration,
    /// Longest wait between attempts.
    pub retry_backoff_max: Duration,
}

impl RunSettings {
    /// Wait after the `failures`-th failed attempt (from 1).
    pub fn backoff(&self, failures: u32) -> Duration {
        let doubled = self
            .retry_backoff
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        doubled.min(self.retry_backoff_max)
    }
}

/// Validated `[daemon]`.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// Address of the health and metrics endpoints.
    pub listen: std::net::SocketAddr,
    /// Follow the tenants' Kinesis streams.
    pub kinesis: bool,
    /// Inbox URL.
    pub inbox_url: String,
    /// Inbox listing interval.
    pub inbox_interval: Duration,
    /// Time given to work in progress on SIGTERM.
    pub shutdown_deadline: Duration,
    /// First restart delay of a failed stream reader.
    pub restart_backoff: Duration,
    /// Longest restart delay.
    pub restart_backoff_max: Duration,
    /// Memory for open windows' keys.
    pub key_cache_bytes: usize,
    /// The memory the process is allowed, bytes.
    pub memory_budget: u64,
    /// Sliding window of the quantile and KPI gauges.
    pub metrics_window: Duration,
}

/// BigQuery's load job quotas, as configured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadQuotas {
    /// Load jobs per table per day (failures included).
    pub jobs_per_table_per_day: u64,
    /// Load jobs per project per day.
    pub jobs_per_project_per_day: u64,
    /// Table updates per 10 seconds.
    pub table_updates_per_10s: u32,
    /// Jobs other writers run per table per day.
    pub other_jobs_per_table_per_day: u64,
    /// Share kept free for retries and failed jobs.
    pub headroom: f64,
}

impl LoadQuotas {
    /// Jobs logferry may run on one table per day.
    pub fn table_budget(&self) -> u64 {
        let usable = (self.jobs_per_table_per_day as f64 * (1.0 - self.headroom)).floor() as u64;
        usable.saturating_sub(self.other_jobs_per_table_per_day)
    }

    /// Jobs logferry may run in the project per day.
    pub fn project_budget(&self) -> u64 {
        (self.jobs_per_project_per_day as f64 * (1.0 - self.headroom)).floor() as u64
    }
}

/// BigQuery allows this many partitions per table.
pub const MAX_PARTITIONS: u64 = 10_000;

/// How warehouse tables are partitioned (on event time).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Partitioning {
    /// One partition per hour: each window replaces its own.
    Hour,
    /// One partition per day: windows append, the seal replaces the day.
    Day,
}

impl Settings {
    /// The configured tenants' ids, in configuration order.
    pub fn tenant_ids(&self) -> Vec<String> {
        self.tenants
            .all()
            .iter()
            .map(|t| t.id.to_string())
            .collect()
    }

    /// The pipeline's clock: the configured reference time, else the wall
    /// clock.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.forward.reference_time.unwrap_or_else(chrono::Utc::now)
    }
}

/// Validated `[aws]`.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    /// Region override.
    pub region: Option<String>,
    /// Endpoint override.
    pub endpoint: Option<String>,
    /// Allow http endpoints.
    pub allow_http: bool,
    /// Multipart threshold.
    pub multipart_threshold: usize,
    /// Attempts per call.
    pub max_attempts: u32,
    /// Longest wait for one attempt.
    pub request_timeout: Duration,
    /// Longest time one call spends retrying.
    pub retry_budget: Duration,
}

impl AwsSettings {
    /// The retry policy of S3 calls.
    pub fn retry_policy(&self) -> crate::retry::RetryPolicy {
        crate::retry::RetryPolicy::new(self.max_attempts, self.retry_budget)
    }
}

/// Validated `[kinesis]`.
#[derive(Debug, Clone)]
pub struct KinesisSettings {
    /// Start shards without a checkpoint at LATEST instead of TRIM_HORIZON.
    pub start_at_latest: bool,
    /// Records per GetRecords call.
    pub max_records_per_call: i32,
    /// Least time between calls on one shard.
    pub min_call_interval: Duration,
    /// Read budget per shard.
    pub max_bytes_per_second: u64,
    /// Pause on a caught-up shard.
    pub idle_interval: Duration,
    /// Lease lifetime of a shard.
    pub lease_ttl: Duration,
}

/// Validated `[gcs]`.
#[derive(Debug, Clone)]
pub struct GcsSettings {
    /// Endpoint, without a trailing slash.
    pub endpoint: String,
    /// No credentials.
    pub anonymous: bool,
    /// Uploads in flight.
    pub parallel_uploads: usize,
    /// Bandwidth cap; 0 for none.
    pub max_bytes_per_second: u64,
    /// Attempts per upload.
    pub max_attempts: u32,
    /// Longest wait for one attempt.
    pub request_timeout: Duration,
    /// Longest time one call spends retrying.
    pub retry_budget: Duration,
}

impl GcsSettings {
    /// The retry policy of GCS calls.
    pub fn retry_policy(&self) -> crate::retry::RetryPolicy {
        crate::retry::RetryPolicy::new(self.max_attempts, self.retry_budget)
    }
}

/// Validated `[bigquery]`.
#[derive(Debug, Clone)]
pub struct BigQuerySettings {
    /// Project.
    pub project: String,
    /// Dataset.
    pub dataset: String,
    /// Location.
    pub location: String,
    /// API root.
    pub endpoint: String,
    /// Send credentials (false for emulators).
    pub authenticate: bool,
    /// Service account key file; `None` for application default credentials.
    pub credentials: Option<PathBuf>,
    /// Partition expiration.
    pub partition_expiration: Option<Duration>,
    /// First poll interval.
    pub poll_initial: Duration,
    /// Longest poll interval.
    pub poll_max: Duration,
    /// Longest wait for one job.
    pub job_timeout: Duration,
    /// Count rows after each load.
    pub verify_loads: bool,
    /// Attempts per API call.
    pub max_attempts: u32,
    /// Longest wait for one API call.
    pub request_timeout: Duration,
    /// Longest time one API call spends retrying.
    pub retry_budget: Duration,
    /// Load job quotas.
    pub quotas: LoadQuotas,
    /// Rows `logferry sql` reads from a table.
    pub sql_max_rows: u64,
}

impl BigQuerySettings {
    /// The retry policy of BigQuery API calls.
    pub fn retry_policy(&self) -> crate::retry::RetryPolicy {
        crate::retry::RetryPolicy::new(self.max_attempts, self.retry_budget)
    }
}

fn non_empty_or(v: &str, fallback: Option<String>) -> Option<String> {
    let v = v.trim();
    if v.is_empty() {
        fallback.filter(|f| !f.trim().is_empty())
    } else {
        Some(v.to_string())
    }
}

/// `host:port` or a URL, as the emulator-host variables are given, to a URL
/// with `suffix` appended.
fn emulator_url(host: &str, suffix: &str) -> String {
    let h = host.trim().trim_end_matches('/');
    if h.contains("://") {
        format!("{h}{suffix}")
    } else {
        format!("http://{h}{suffix}")
    }
}

fn is_bq_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 1024 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Validated `[forward]`.
#[derive(Debug, Clone)]
pub struct ForwardSettings {
    /// NDJSON arrival-stream field.
    pub stream_field: String,
    /// Oldest accepted event time relative to now.
    pub max_age: Duration,
    /// Latest accepted event time relative to now.
    pub max_skew: Duration,
    /// Fixed "now", if configured.
    pub reference_time: Option<DateTime<Utc>>,
    /// Largest message in bytes.
    pub max_message_bytes: usize,
    /// Largest record in bytes.
    pub max_record_bytes: usize,
    /// Largest decompressed envelope.
    pub max_envelope_bytes: usize,
    /// Most events per envelope.
    pub max_envelope_events: usize,
    /// Raw bytes kept per dead-letter entry.
    pub dlq_raw_limit: usize,
    /// Records per landing object.
    pub batch_max_records: usize,
    /// Decoded bytes per landing object.
    pub batch_max_bytes: usize,
    /// Oldest buffered record before a flush, for streaming inputs.
    pub batch_max_age: Duration,
    /// Bound on all open buffers.
    pub max_buffered_bytes: usize,
}

/// Validated `[parquet]`.
#[derive(Debug, Clone, Copy)]
pub struct ParquetSettings {
    /// zstd level.
    pub zstd_level: i32,
    /// Rows per row group.
    pub row_group_rows: usize,
}

/// Validated `[warehouse]`.
#[derive(Debug, Clone)]
pub enum WarehouseSettings {
    /// Local Parquet warehouse at a URL.
    Local {
        /// Location URL or path.
        url: String,
    },
    /// BigQuery.
    BigQuery(Box<BigQuerySettings>),
}

/// A configured tenant.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// Position in the configuration (dense, from 0).
    pub index: usize,
    /// Validated id.
    pub id: TenantId,
    /// Kinesis streams / NDJSON stream values.
    pub streams: Vec<String>,
    /// Log group prefixes.
    pub log_groups: Vec<String>,
    /// Allowed sender accounts; empty allows any.
    pub accounts: Vec<String>,
}

impl Tenant {
    /// True when `account` may send for this tenant.
    pub fn allows_account(&self, account: &str) -> bool {
        self.accounts.is_empty() || self.accounts.iter().any(|a| a == account)
    }
}

/// Maps sources to tenants. Built only from a validated configuration: no two
/// tenants share a stream, and no log group prefix of one tenant is a prefix of
/// another's, so every source has at most one owner.
#[derive(Debug, Clone, Default)]
pub struct TenantRegistry {
    tenants: Vec<Tenant>,
    by_id: HashMap<String, usize>,
    by_stream: HashMap<String, usize>,
    log_groups: Vec<(String, usize)>,
}

impl TenantRegistry {
    /// Validates tenants and builds the lookup tables.
    pub fn new(configs: &[TenantConfig]) -> Result<Self> {
        let mut reg = TenantRegistry::default();
        for c in configs {
            let id = TenantId::new(&c.id).map_err(|e| Error::Config(format!("[[tenant]] {e}")))?;
            let idx = reg.tenants.len();
            if reg.by_id.insert(c.id.clone(), idx).is_some() {
                return Err(Error::Config(format!(
                    "tenant {:?} is configured twice",
                    c.id
                )));
            }
            for s in &c.streams {
                validate_stream_name(s)?;
                if let Some(other) = reg.by_stream.insert(s.clone(), idx) {
                    return Err(Error::Config(format!(
                        "stream {s:?} belongs to both {} and {}",
                        reg.tenants[other].id, c.id
                    )));
                }
            }
            for g in &c.log_groups {
                if g.is_empty() || g.len() > 512 || g.chars().any(|ch| ch.is_control()) {
                    return Err(Error::Config(format!(
                        "tenant {}: log group prefix {g:?} must be 1..=512 printable characters",
                        c.id
                    )));
                }
                for (other, oidx) in &reg.log_groups {
                    if *oidx != idx && (other.starts_with(g.as_str()) || g.starts_with(other)) {
                        return Err(Error::Config(format!(
                            "log group prefixes {g:?} ({}) and {other:?} ({}) overlap: \
                             a log group would have two owners",
                            c.id, reg.tenants[*oidx].id
                        )));
                    }
                }
                reg.log_groups.push((g.clone(), idx));
            }
            for a in &c.accounts {
                if a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Error::Config(format!(
                        "tenant {}: account {a:?} is not a 12-digit AWS account id",
                        c.id
                    )));
                }
            }
            reg.tenants.push(Tenant {
                index: idx,
                id,
                streams: c.streams.clone(),
                log_groups: c.log_groups.clone(),
                accounts: c.accounts.clone(),
            });
        }
        Ok(reg)
    }

    /// All tenants in configuration order.
    pub fn all(&self) -> &[Tenant] {
        &self.tenants
    }

    /// True when no tenant is configured.
    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    /// The tenant with this id.
    pub fn get(&self, id: &str) -> Option<&Tenant> {
        self.by_id.get(id).map(|&i| &self.tenants[i])
    }

    /// The tenant owning a stream.
    pub fn by_stream(&self, stream: &str) -> Option<&Tenant> {
        self.by_stream.get(stream).map(|&i| &self.tenants[i])
    }

    /// The tenant owning a log group (by prefix).
    pub fn by_log_group(&self, group: &str) -> Option<&Tenant> {
        self.log_groups
            .iter()
            .find(|(prefix, _)| group.starts_with(prefix.as_str()))
            .map(|&(_, i)| &self.tenants[i])
    }
}

fn validate_stream_name(s: &str) -> Result<()> {
    // Kinesis' own rule, less "." and "..": stream names are ledger path
    // segments (checkpoints, leases).
    let ok = !s.is_empty()
        && s.len() <= 128
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "stream name {s:?} must be 1..=128 characters of [a-zA-Z0-9_.-], not . or .."
        )))
    }
}

fn non_empty(name: &str, v: &str) -> Result<String> {
    if v.trim().is_empty() {
        Err(Error::Config(format!("{name} must not be empty")))
    } else {
        Ok(v.trim().to_string())
    }
}

/// Parses `15m`, `14d`, `500ms`, `60s`, `1h`.
pub fn parse_duration(name: &str, text: &str) -> Result<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| Error::Config(format!("{name} = {text:?}: expected e.g. 15m, 14d, 60s")))?;
    let secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => {
            return Err(Error::Config(format!(
                "{name} = {text:?}: unit must be one of ms, s, m, h, d"
            )));
        }
    };
    n.checked_mul(secs)
        .map(Duration::from_secs)
        .ok_or_else(|| Error::Config(format!("{name} = {text:?} is too large")))
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn apply_env(table: &mut toml::Table, key: &str, value: &str) -> Result<()> {
    let path: Vec<String> = key[ENV_PREFIX.len()..]
        .split("__")
        .map(|s| s.to_ascii_lowercase())
        .collect();
    if path.iter().any(|p| p.is_empty()) {
        return Err(Error::Config(format!(
            "environment variable {key}: expected LOGFERRY__SECTION__KEY"
        )));
    }
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !matches!(v, toml::Value::Datetime(_)))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let (last, parents) = path.split_last().expect("path has at least one segment");
    let mut cur = table;
    for p in parents {
        let entry = cur
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = match entry {
            toml::Value::Table(t) => t,
            _ => {
                return Err(Error::Config(format!(
                    "environment variable {key}: {p} is not a section"
                )));
            }
        };
    }
    cur.insert(last.clone(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(file: Option<&str>, env: &[(&str, &str)]) -> Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        if let Some(text) = file {
            std::fs::write(&path, text).unwrap();
        }
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load(file.map(|_| path.as_path()), env).map(|(c, _)| c)
    }

    #[test]
    fn defaults_validate() {
        let s = load(None, &[]).unwrap().validate(Path::new("/d")).unwrap();
        assert_eq!(s.forward.max_age, Duration::from_secs(14 * 86400));
        assert_eq!(s.forward.max_skew, Duration::from_secs(15 * 60));
        assert_eq!(s.forward.max_message_bytes, 256 * 1024);
        assert_eq!(s.lake_url, "/d/lake");
        assert!(s.tenants.is_empty());
    }

    #[test]
    fn layering_file_then_env() {
        let file = "[forward]\nmax_age = \"7d\"\nmax_skew = \"1m\"\n[[tenant]]\nid = \"t-1\"\nstreams = [\"s1\"]\n";
        let c = load(
            Some(file),
            &[
                ("LOGFERRY__FORWARD__MAX_SKEW", "5m"),
                ("LOGFERRY__PARQUET__ZSTD_LEVEL", "9"),
                ("LOGFERRY__FORWARD__REFERENCE_TIME", "2026-01-02T03:04:05Z"),
                ("OTHER", "ignored"),
            ],
        )
        .unwrap();
        assert_eq!(c.forward.max_age, "7d");
        assert_eq!(c.forward.max_skew, "5m");
        assert_eq!(c.parquet.zstd_level, 9);
        let s = c.validate(Path::new("/d")).unwrap();
        assert_eq!(
            s.forward.reference_time.unwrap().to_rfc3339(),
            "2026-01-02T03:04:05+00:00"
        );
        assert_eq!(s.tenants.by_stream("s1").unwrap().id.as_str(), "t-1");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = load(Some("[forward]\nmax_agee = \"7d\"\n"), &[]).unwrap_err();
        assert!(e.to_string().contains("max_agee"), "{e}");
        let e = load(None, &[("LOGFERRY__FORWARD__NOPE", "1")]).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }

    #[test]
    fn tenant_validation() {
        for bad in ["../x", "a/b", "", "UPPER", "-lead", &"x".repeat(64)] {
            let file = format!("[[tenant]]\nid = {bad:?}\n");
            let e = load(Some(&file), &[]).unwrap().validate(Path::new("/d"));
            assert!(e.is_err(), "{bad:?} accepted");
        }
        let dup = "[[tenant]]\nid=\"a\"\nstreams=[\"s\"]\n[[tenant]]\nid=\"b\"\nstreams=[\"s\"]\n";
        assert!(
            load(Some(dup), &[])
                .unwrap()
                .validate(Path::new("/d"))
                .is_err()
        );
        let overlap = "[[tenant]]\nid=\"a\"\nlog_groups=[\"/t/a\"]\n[[tenant]]\nid=\"b\"\nlog_groups=[\"/t/a/b\"]\n";
        let e = load(Some(overlap), &[])
            .unwrap()
            .validate(Path::new("/d"))
            .unwrap_err();
        assert!(e.to_string().contains("overlap"), "{e}");
        let acct = "[[tenant]]\nid=\"a\"\naccounts=[\"123\"]\n";
        assert!(
            load(Some(acct), &[])
                .unwrap()
                .validate(Path::new("/d"))
                .is_err()
        );
    }

    #[test]
    fn log_group_prefix_lookup() {
        let f = "[[tenant]]\nid=\"a\"\nlog_groups=[\"/tenants/a/\"]\naccounts=[\"111111111111\"]\n";
        let s = load(Some(f), &[])
            .unwrap()
            .validate(Path::new("/d"))
            .unwrap();
        let t = s.tenants.by_log_group("/tenants/a/checkout").unwrap();
        assert!(t.allows_account("111111111111"));
        assert!(!t.allows_account("222222222222"));
        assert!(s.tenants.by_log_group("/tenants/ab/x").is_none());
    }

    #[test]
    fn bigquery_settings_and_emulator_conventions() {
        let f = "[storage]\nexport = \"gs://b/p\"\n[warehouse]\nkind = \"bigquery\"\npartitioning = \"day\"\n";
        let env = [
            ("BIGQUERY_EMULATOR_HOST", "127.0.0.1:9050"),
            ("BIGQUERY_PROJECT", "proj"),
            ("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9023"),
        ];
        let s = load(Some(f), &env)
            .unwrap()
            .validate(Path::new("/d"))
            .unwrap();
        match &s.warehouse {
            WarehouseSettings::BigQuery(b) => {
                assert_eq!(b.endpoint, "http://127.0.0.1:9050/bigquery/v2");
                assert!(!b.authenticate);
                assert_eq!(
                    (b.project.as_str(), b.dataset.as_str()),
                    ("proj", "logferry")
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.gcs.endpoint, "http://127.0.0.1:9023");
        assert!(s.gcs.anonymous);
        // BigQuery needs a gs:// export store and a project.
        let e = load(Some("[warehouse]\nkind = \"bigquery\"\n"), &[])
            .unwrap()
            .validate(Path::new("/d"));
        assert!(e.unwrap_err().to_string().contains("gs://"));
        let e = load(Some(f), &[])
            .unwrap()
            .validate(Path::new("/d"))
            .unwrap_err();
        assert!(e.to_string().contains("BIGQUERY_PROJECT"), "{e}");
        // Hourly partitions must expire before BigQuery's 10,000-partition limit.
        let hourly = f.replace("\"day\"", "\"hour\"");
        let e = load(
            Some(&format!(
                "{hourly}[bigquery]\npartition_expiration = \"500d\"\n"
            )),
            &env,
        )
        .unwrap()
        .validate(Path::new("/d"))
        .unwrap_err();
        assert!(e.to_string().contains("10000 per table"), "{e}");
        let e = load(
            Some(&format!(
                "{hourly}[bigquery]\npartition_expiration = \"\"\n"
            )),
            &env,
        )
        .unwrap()
        .validate(Path::new("/d"));
        assert!(e.is_err());
        load(
            Some(&format!(
                "{hourly}[bigquery]\npartition_expiration = \"400d\"\n"
            )),
            &env,
        )
        .unwrap()
        .validate(Path::new("/d"))
        .unwrap();
    }

    #[test]
    fn example_configs_validate() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        for (file, env) in [
            ("deployment.example.toml", vec![]),
            (
                "emulators.example.toml",
                vec![
                    (
                        "BIGQUERY_EMULATOR_HOST".to_string(),
                        "127.0.0.1:9050".to_string(),
                    ),
                    ("BIGQUERY_PROJECT".to_string(), "test-project".to_string()),
                ],
            ),
        ] {
            let (c, _) = Config::load(Some(&root.join(file)), env).unwrap();
            let s = c
                .validate(Path::new("/d"))
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(
                matches!(s.warehouse, WarehouseSettings::BigQuery(_)),
                "{file}"
            );
            assert!(s.lake_url.starts_with("s3://") && s.export_url.starts_with("gs://"));
        }
    }

    #[test]
    fn cluster_targets() {
        assert_eq!(ClusterTarget::parse(" ").unwrap(), ClusterTarget::Local);
        assert_eq!(
            ClusterTarget::parse("standalone").unwrap(),
            ClusterTarget::Standalone
        );
        assert_eq!(
            ClusterTarget::parse("df://sched.internal:50050/").unwrap(),
            ClusterTarget::Remote("df://sched.internal:50050".into())
        );
        for bad in ["http://x:1", "df://x", "df://:50050", "df://x:port"] {
            let e = ClusterTarget::parse(bad).unwrap_err().to_string();
            assert!(e.contains("cluster.scheduler"), "{bad}: {e}");
        }
        let s = load(None, &[("LOGFERRY__CLUSTER__SCHEDULER", "df://s:50050")])
            .unwrap()
            .validate(Path::new("/d"))
            .unwrap();
        assert_eq!(s.cluster, ClusterTarget::Remote("df://s:50050".into()));
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("x", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            parse_duration("x", "2h").unwrap(),
            Duration::from_secs(7200)
        );
        assert!(parse_duration("x", "2 weeks").is_err());
        assert!(parse_duration("x", "h").is_err());
    }
}
