//! BigQuery as the warehouse: tables from `schemas/` (partitioned on event
//! time, clustered by tenant and service), one load job per window or day and
//! table from the `gs://` export store, never streaming inserts.
//!
//! Job ids are deterministic. Before submitting, the warehouse asks for the
//! job: one that exists was submitted by an earlier run (that may have died
//! while it ran), and is waited on instead of started again. A submit that
//! still answers 409 "duplicate" (two runners racing) is treated the same way.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use gcp_bigquery_client::Client;
use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::client_builder::ClientBuilder;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::clustering::Clustering;
use gcp_bigquery_client::model::dataset::Dataset;
use gcp_bigquery_client::model::field_type::FieldType;
use gcp_bigquery_client::model::get_query_results_parameters::GetQueryResultsParameters;
use gcp_bigquery_client::model::job::Job;
use gcp_bigquery_client::model::job_configuration::JobConfiguration;
use gcp_bigquery_client::model::job_configuration_load::JobConfigurationLoad;
use gcp_bigquery_client::model::job_reference::JobReference;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_reference::TableReference;
use gcp_bigquery_client::model::table_schema::TableSchema;
use gcp_bigquery_client::model::time_partitioning::TimePartitioning;
use tokio::sync::Mutex;

use logferry_core::config::{BigQuerySettings, LoadQuotas, Partitioning};
use logferry_core::failpoint;
use logferry_core::ledger::Ledger;
use logferry_core::partition::Window;
use logferry_core::schema::{
    BqField, LOG_RECORD_JSON, LOG_RECORDS_TABLE, arrow_to_bq, parse_bq_schema,
};

use crate::error::{Error, Result};
use crate::store::ExportStore;
use crate::warehouse::{LoadJob, LoadResult, PartitionId, Warehouse, WriteMode, time_column};

/// Returns a fixed token: for emulators, which want no OAuth flow.
#[derive(Clone)]
struct FixedToken;

#[async_trait]
impl Authenticator for FixedToken {
    async fn access_token(&self) -> std::result::Result<String, BQError> {
        Ok("emulator".into())
    }
}

/// HTTP status of a BigQuery error, when it has one.
pub fn bq_status(e: &BQError) -> Option<i64> {
    match e {
        BQError::ResponseError { error } => Some(error.error.code),
        BQError::RequestError(r) => r.status().map(|s| i64::from(s.as_u16())),
        _ => None,
    }
}

/// True when BigQuery refused the call for its rate limits (`403
/// rateLimitExceeded`: too many updates of one table), which waiting cures.
fn rate_limited(e: &BQError) -> bool {
    match e {
        BQError::ResponseError { error } => error
            .error
            .errors
            .iter()
            .any(|m| m.get("reason").is_some_and(|r| r == "rateLimitExceeded")),
        _ => false,
    }
}

fn retryable(e: &BQError) -> bool {
    if rate_limited(e) {
        return true;
    }
    match bq_status(e) {
        Some(s) => s == 429 || s >= 500,
        None => matches!(
            e,
            BQError::RequestError(_) | BQError::ConnectionPoolError(_)
        ),
    }
}

/// Runs one API call within `timeout`; a call without an answer by then is
/// abandoned (its connection dropped) and reported as a transport error,
/// which is retried like a dropped connection.
async fn timed<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = std::result::Result<T, BQError>>,
) -> std::result::Result<T, BQError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(r) => r,
        Err(_) => Err(BQError::ConnectionPoolError(format!(
            "no answer within {timeout:?}"
        ))),
    }
}

fn bq_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::BigQuery {
        what: what.to_string(),
        message: e.to_string(),
    }
}

/// The load job request of a [`LoadJob`]: the destination carries the
/// partition decorator when the partition is replaced.
pub fn load_request(
    settings: &BigQuerySettings,
    job: &LoadJob,
    job_id: &str,
    uris: Vec<String>,
) -> Job {
    let (table_id, disposition) = match job.mode {
        WriteMode::Replace => (
            format!("{}${}", job.table, job.partition.decorator()),
            "WRITE_TRUNCATE",
        ),
        WriteMode::Append => (job.table.clone(), "WRITE_APPEND"),
    };
    Job {
        job_reference: Some(JobReference {
            job_id: Some(job_id.to_string()),
            project_id: Some(settings.project.clone()),
            location: Some(settings.location.clone()).filter(|l| !l.is_empty()),
        }),
        configuration: Some(JobConfiguration {
            load: Some(JobConfigurationLoad {
                source_uris: Some(uris),
                source_format: Some("PARQUET".into()),
                destination_table: Some(TableReference::new(
                    &settings.project,
                    &settings.dataset,
                    &table_id,
                )),
                write_disposition: Some(disposition.into()),
                create_disposition: Some("CREATE_NEVER".into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn query_errors(
    errs: Option<&Vec<gcp_bigquery_client::model::error_proto::ErrorProto>>,
) -> Result<()> {
    match errs.filter(|e| !e.is_empty()) {
        Some(errs) => Err(bq_err(
            "query",
            errs.iter()
                .map(|e| e.message.clone().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("; "),
        )),
        None => Ok(()),
    }
}

fn cells(
    rows: Option<Vec<gcp_bigquery_client::model::table_row::TableRow>>,
) -> Vec<Vec<Option<String>>> {
    rows.unwrap_or_default()
        .into_iter()
        .map(|r| {
            r.columns
                .unwrap_or_default()
                .into_iter()
                .map(|c| match c.value {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(s)) => Some(s),
                    Some(v) => Some(v.to_string()),
                })
                .collect()
        })
        .collect()
}

/// BigQuery load jobs from the export bucket.
pub struct BigQueryWarehouse {
    client: Client,
    settings: BigQuerySettings,
    partitioning: Partitioning,
    export: Arc<dyn ExportStore>,
    ensured: Mutex<HashSet<String>>,
    quota: QuotaLedger,
    updates: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// Load jobs run per table per day, counted in the lake's ledger
/// (`_state/quota/<day>/<table>`), shared by every logferry process
/// writing the dataset. BigQuery's day is Pacific time: its quotas reset at
/// midnight there.
#[derive(Debug, Clone)]
pub struct QuotaLedger {
    ledger: Ledger,
    quotas: LoadQuotas,
}

/// One table's count of a day.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct QuotaCount {
    /// Jobs submitted (failed ones count too).
    pub jobs: u64,
}

/// BigQuery's quota day: the date in Pacific time.
pub fn quota_day(t: chrono::DateTime<chrono::Utc>) -> String {
    t.with_timezone(&chrono_tz::America::Los_Angeles)
        .format("%Y-%m-%d")
        .to_string()
}

impl QuotaLedger {
    /// Counts in `ledger` against `quotas`.
    pub fn new(ledger: Ledger, quotas: LoadQuotas) -> Self {
        QuotaLedger { ledger, quotas }
    }

    fn key(table: &str) -> String {
        format!("quota/{}/{table}", quota_day(chrono::Utc::now()))
    }

    /// Jobs run on `table` today.
    pub async fn used(&self, table: &str) -> Result<u64> {
        Ok(self
            .ledger
            .latest::<QuotaCount>(&Self::key(table))
            .await?
            .map_or(0, |c| c.value.jobs))
    }

    /// Jobs logferry may still run on `table` today.
    pub async fn left(&self, table: &str) -> Result<u64> {
        Ok(self
            .quotas
            .table_budget()
            .saturating_sub(self.used(table).await?))
    }

    /// Counts one job on `table`, refused once today's budget is used.
    pub async fn take(&self, table: &str) -> Result<()> {
        let key = Self::key(table);
        let budget = self.quotas.table_budget();
        loop {
            let cur = self.ledger.latest::<QuotaCount>(&key).await?;
            let used = cur.as_ref().map_or(0, |c| c.value.jobs);
            if used >= budget {
                return Err(Error::QuotaExhausted {
                    table: table.to_string(),
                    used,
                    budget,
                });
            }
            let next = QuotaCount { jobs: used + 1 };
            match self
                .ledger
                .commit(&key, cur.as_ref().map(|c| c.version), &next)
                .await
            {
                Ok(_) => return Ok(()),
                // Another writer counted a job meanwhile: count again.
                Err(logferry_core::Error::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl std::fmt::Debug for BigQueryWarehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BigQueryWarehouse")
            .field("project", &self.settings.project)
            .field("dataset", &self.settings.dataset)
            .field("endpoint", &self.settings.endpoint)
            .finish()
    }
}

fn field_type(t: &str) -> Result<FieldType> {
    Ok(match t {
        "STRING" => FieldType::String,
        "BYTES" => FieldType::Bytes,
        "INTEGER" | "INT64" => FieldType::Int64,
        "FLOAT" | "FLOAT64" => FieldType::Float64,
        "BOOLEAN" | "BOOL" => FieldType::Bool,
        "TIMESTAMP" => FieldType::Timestamp,
        "DATE" => FieldType::Date,
        "JSON" => FieldType::Json,
        other => {
            return Err(Error::Config(format!(
                "BigQuery type {other} is not supported"
            )));
        }
    })
}

fn table_schema(fields: &[BqField]) -> Result<TableSchema> {
    let mut out = Vec::new();
    for f in fields {
        let mut s = TableFieldSchema::new(&f.name, field_type(&f.field_type)?);
        s.mode = Some(f.mode.clone());
        if !f.description.is_empty() {
            s.description = Some(f.description.clone());
        }
        out.push(s);
    }
    Ok(TableSchema::new(out))
}

fn timestamp_literal(t: chrono::DateTime<chrono::Utc>) -> String {
    format!("TIMESTAMP '{}'", t.format("%Y-%m-%d %H:%M:%S%.6f+00"))
}

impl BigQueryWarehouse {
    /// A client for the configured endpoint and credentials, counting its
    /// load jobs in `ledger`.
    pub async fn open(
        settings: &BigQuerySettings,
        partitioning: Partitioning,
        export: Arc<dyn ExportStore>,
        ledger: Ledger,
    ) -> Result<Self> {
        let mut b = ClientBuilder::new();
        b.with_v2_base_url(settings.endpoint.clone());
        let client = if !settings.authenticate {
            b.build_from_authenticator(Arc::new(FixedToken)).await
        } else if let Some(key) = &settings.credentials {
            b.build_from_service_account_key_file(&key.display().to_string())
                .await
        } else {
            b.build_from_application_default_credentials().await
        }
        .map_err(|e| Error::Config(format!("BigQuery credentials: {e}")))?;
        Ok(BigQueryWarehouse {
            client,
            settings: settings.clone(),
            partitioning,
            export,
            ensured: Mutex::new(HashSet::new()),
            quota: QuotaLedger::new(ledger, settings.quotas),
            updates: Mutex::new(HashMap::new()),
        })
    }

    /// The load job counts.
    pub fn quota(&self) -> &QuotaLedger {
        &self.quota
    }

    /// Waits until `table` may be updated again: BigQuery allows
    /// `table_updates_per_10s` updates of one table per 10 seconds, and
    /// loads beyond that are refused with `rateLimitExceeded`. Loads of one
    /// table from this process queue here; those of other processes are
    /// retried with jitter when refused.
    async fn update_slot(&self, table: &str) {
        let window = Duration::from_secs(10);
        let limit = self.settings.quotas.table_updates_per_10s as usize;
        loop {
            let wait = {
                let mut u = self.updates.lock().await;
                let q = u.entry(table.to_string()).or_default();
                let now = Instant::now();
                while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
                    q.pop_front();
                }
                if q.len() < limit {
                    q.push_back(now);
                    return;
                }
                q.front().map(|t| window - now.duration_since(*t))
            };
            tokio::time::sleep(wait.unwrap_or(window)).await;
        }
    }

    fn location(&self) -> Option<&str> {
        Some(self.settings.location.as_str()).filter(|l| !l.is_empty())
    }

    async fn retry<T, F, Fut>(&self, what: &str, mut f: F) -> std::result::Result<T, BQError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, BQError>>,
    {
        let timeout = self.settings.request_timeout;
        self.settings
            .retry_policy()
            .run(&format!("BigQuery {what}"), retryable, || {
                timed(timeout, f())
            })
            .await
    }

    /// Creates the dataset and the table if absent (once per process).
    async fn ensure_table(&self, table: &str, schema: &SchemaRef) -> Result<()> {
        let mut ensured = self.ensured.lock().await;
        if ensured.contains(table) {
            return Ok(());
        }
        let s = &self.settings;
        if ensured.is_empty() {
            let mut ds = Dataset::new(&s.project, &s.dataset);
            if let Some(l) = self.location() {
                ds = ds.location(l);
            }
            match self
                .retry("dataset create", || {
                    self.client.dataset().create(ds.clone())
                })
                .await
            {
                Ok(_) => tracing::info!(dataset = %s.dataset, "Created dataset."),
                Err(e) if bq_status(&e) == Some(409) => {}
                Err(e) => return Err(bq_err("dataset create", e)),
            }
        }
        // The records table keeps its documented schema; rollups take theirs
        // from their Parquet.
        let fields = if table == LOG_RECORDS_TABLE {
            parse_bq_schema(LOG_RECORD_JSON)?
        } else {
            arrow_to_bq(schema)?
        };
        let time = time_column(schema).ok_or_else(|| {
            Error::Config(format!(
                "table {table} has no timestamp column to partition on"
            ))
        })?;
        let mut tp = match self.partitioning {
            Partitioning::Hour => TimePartitioning::per_hour(),
            Partitioning::Day => TimePartitioning::per_day(),
        }
        .field(&time);
        if let Some(e) = s.partition_expiration {
            tp = tp.expiration_ms(e);
        }
        let cluster: Vec<String> = ["tenant_id", "service"]
            .iter()
            .filter(|c| schema.field_with_name(c).is_ok())
            .map(|c| c.to_string())
            .collect();
        let t = Table::new(&s.project, &s.dataset, table, table_schema(&fields)?)
            .time_partitioning(tp)
            .clustering(Clustering {
                fields: Some(cluster),
            });
        match self
            .retry("table create", || self.client.table().create(t.clone()))
            .await
        {
            Ok(_) => tracing::info!(table, "Created table."),
            Err(e) if bq_status(&e) == Some(409) => {
                // Exists: its columns must be the ones we load.
                let existing = self
                    .retry("table get", || {
                        self.client.table().get(&s.project, &s.dataset, table, None)
                    })
                    .await
                    .map_err(|e| bq_err("table get", e))?;
                let have: Vec<String> = existing
                    .schema
                    .fields
                    .as_ref()
                    .map(|f| f.iter().map(|x| x.name.clone()).collect())
                    .unwrap_or_default();
                let want: Vec<String> = fields.iter().map(|f| f.name.clone()).collect();
                if have != want {
                    return Err(Error::Config(format!(
                        "table {}.{table} has columns {have:?}, logferry loads {want:?}: \
                         schema drift, fix the table or the schema before loading",
                        s.dataset
                    )));
                }
            }
            Err(e) => return Err(bq_err("table create", e)),
        }
        ensured.insert(table.to_string());
        Ok(())
    }

    /// Waits for a job to finish; a failed job is an error with its id and
    /// BigQuery's messages.
    async fn wait(&self, job_id: &str) -> Result<Job> {
        let s = &self.settings;
        let start = Instant::now();
        let mut interval = s.poll_initial;
        loop {
            failpoint::hit("export.while_polling");
            let j = self
                .retry("job get", || {
                    self.client
                        .job()
                        .get_job(&s.project, job_id, self.location())
                })
                .await
                .map_err(|e| bq_err("job get", e))?;
            let status = j.status.clone().unwrap_or_default();
            if status.state.as_deref() == Some("DONE") {
                if let Some(err) = status.error_result {
                    let mut msgs: Vec<String> = status
                        .errors
                        .unwrap_or_default()
                        .iter()
                        .map(|e| {
                            format!(
                                "{}: {}{}",
                                e.reason.clone().unwrap_or_default(),
                                e.message.clone().unwrap_or_default(),
                                e.location
                                    .as_ref()
                                    .map(|l| format!(" ({l})"))
                                    .unwrap_or_default()
                            )
                        })
                        .collect();
                    if msgs.is_empty() {
                        msgs.push(format!(
                            "{}: {}",
                            err.reason.unwrap_or_default(),
                            err.message.unwrap_or_default()
                        ));
                    }
                    return Err(Error::LoadFailed {
                        job_id: job_id.to_string(),
                        message: msgs.join("; "),
                    });
                }
                return Ok(j);
            }
            if start.elapsed() > s.job_timeout {
                return Err(Error::LoadFailed {
                    job_id: job_id.to_string(),
                    message: format!(
                        "still {} after {:?}; the next run waits on it again",
                        status.state.unwrap_or_default(),
                        s.job_timeout
                    ),
                });
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(s.poll_max);
        }
    }

    /// Runs the load under its deterministic id, or resumes it: a job with
    /// the id that exists (an earlier run submitted it, then died or timed
    /// out) is waited on instead of submitted again. A job id that failed can
    /// never run again in BigQuery, so a retry after a failure uses the next
    /// free id of the sequence `id`, `id_r1`, `id_r2`, ... Returns the id that
    /// loaded and whether it had been submitted before.
    async fn run_job(&self, job: &LoadJob, uris: Vec<String>) -> Result<(String, bool)> {
        let s = &self.settings;
        // Job ids are unique per project, not per dataset: two datasets
        // loaded with the same content must not share one.
        let base = format!(
            "{}_{}",
            job.job_id,
            &logferry_core::ids::hash_hex(format!("{}.{}", s.project, s.dataset).as_bytes())[..8]
        );
        let mut attempt = 0u32;
        let mut transient = 0u32;
        // The job id counted against the quota (a resubmission of the same
        // id after a lost answer is the same job).
        let mut counted: Option<String> = None;
        while attempt < 100 {
            let id = if attempt == 0 {
                base.clone()
            } else {
                format!("{base}_r{attempt}")
            };
            let found = self
                .retry("job get", || {
                    self.client.job().get_job(&s.project, &id, self.location())
                })
                .await;
            match found {
                Ok(j) => {
                    // A job under our id must be ours: same destination.
                    let dest = j
                        .configuration
                        .as_ref()
                        .and_then(|c| c.load.as_ref())
                        .and_then(|l| l.destination_table.as_ref())
                        .map(|t| (t.dataset_id.clone(), t.table_id.clone()));
                    let ours = dest.as_ref().is_some_and(|(d, t)| {
                        *d == s.dataset
                            && (*t == job.table || t.starts_with(&format!("{}$", job.table)))
                    });
                    if !ours {
                        return Err(Error::LoadFailed {
                            job_id: id,
                            message: format!(
                                "a job with this id exists with another destination ({dest:?})"
                            ),
                        });
                    }
                    let status = j.status.unwrap_or_default();
                    if status.state.as_deref() == Some("DONE") && status.error_result.is_some() {
                        let limited = status
                            .error_result
                            .as_ref()
                            .and_then(|e| e.reason.as_deref())
                            == Some("rateLimitExceeded");
                        tracing::info!(job_id = %id, limited, "Earlier attempt of the load failed: trying the next job id.");
                        if limited {
                            tokio::time::sleep(logferry_core::retry::backoff(attempt + 3)).await;
                        }
                        attempt += 1;
                        continue;
                    }
                    tracing::info!(job_id = %id, "Load job exists already: waiting on it.");
                    self.wait(&id).await?;
                    return Ok((id, true));
                }
                Err(e) if bq_status(&e) == Some(404) => {}
                Err(e) => return Err(bq_err("job get", e)),
            }
            let request = load_request(s, job, &id, uris.clone());
            // Every submitted job counts against the table's daily quota,
            // failed ones too.
            if counted.as_deref() != Some(id.as_str()) {
                self.quota.take(&job.table).await?;
                counted = Some(id.clone());
            }
            self.update_slot(&job.table).await;
            // Not retried blindly: a submit whose answer was lost may have
            // created the job, and some servers run a resubmitted job again.
            // Look for it first (the top of the loop), then submit.
            let existed = match timed(
                s.request_timeout,
                self.client.job().insert(&s.project, request),
            )
            .await
            {
                Ok(_) => false,
                Err(e) if bq_status(&e) == Some(409) => {
                    tracing::info!(job_id = %id, "Load job id is a duplicate: waiting on the existing job.");
                    true
                }
                Err(e) if retryable(&e) && transient + 1 < s.max_attempts => {
                    transient += 1;
                    tracing::warn!(job_id = %id, error = %e, "Submitting the load job failed; checking whether it exists.");
                    tokio::time::sleep(logferry_core::retry::backoff(transient)).await;
                    continue;
                }
                Err(e) => {
                    return Err(Error::LoadFailed {
                        job_id: id,
                        message: e.to_string(),
                    });
                }
            };
            failpoint::hit("export.after_submit");
            self.wait(&id).await?;
            return Ok((id, existed));
        }
        Err(Error::LoadFailed {
            job_id: base,
            message: "100 attempts of this load failed".into(),
        })
    }

    /// Runs a query and returns its rows as strings, every page of them.
    pub async fn query(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        self.query_rows(sql, u64::MAX).await
    }

    /// Runs a query and reads its result page by page; a result of more
    /// than `max_rows` rows is refused, with the limit in the message.
    pub async fn query_rows(&self, sql: &str, max_rows: u64) -> Result<Vec<Vec<Option<String>>>> {
        const PAGE: i32 = 10_000;
        let s = &self.settings;
        let mut req = QueryRequest::new(sql.to_string());
        req.location = self.location().map(str::to_string);
        req.timeout_ms = Some(10_000);
        req.max_results = Some(PAGE);
        let resp = self
            .retry("query", || self.client.job().query(&s.project, req.clone()))
            .await
            .map_err(|e| bq_err("query", e))?;
        query_errors(resp.errors.as_ref())?;
        let mut rows = cells(resp.rows);
        let mut token = resp.page_token;
        let mut complete = resp.job_complete != Some(false);
        let job_id = resp.job_reference.and_then(|r| r.job_id);
        let start = Instant::now();
        while !complete || token.is_some() {
            if rows.len() as u64 > max_rows {
                break;
            }
            let Some(job_id) = job_id.as_deref() else {
                return Err(bq_err(
                    "query",
                    "the result has more pages but no job to read them from",
                ));
            };
            let params = GetQueryResultsParameters {
                location: self.location().map(str::to_string),
                max_results: Some(PAGE),
                page_token: token.clone(),
                timeout_ms: Some(10_000),
                ..Default::default()
            };
            let r = self
                .retry("query results", || {
                    self.client
                        .job()
                        .get_query_results(&s.project, job_id, params.clone())
                })
                .await
                .map_err(|e| bq_err("query results", e))?;
            query_errors(r.errors.as_ref())?;
            if r.job_complete == Some(false) {
                if start.elapsed() > s.job_timeout {
                    return Err(bq_err(
                        "query",
                        format!("not complete after {:?}", s.job_timeout),
                    ));
                }
                continue;
            }
            complete = true;
            rows.extend(cells(r.rows));
            token = r.page_token;
        }
        if rows.len() as u64 > max_rows {
            return Err(bq_err(
                "query",
                format!(
                    "the result holds more than {max_rows} rows (bigquery.sql_max_rows): \
                     filter it in BigQuery, or raise the limit"
                ),
            ));
        }
        Ok(rows)
    }

    /// Rows of `table` per (tenant_id, source): the table's reference and
    /// the pairs with their counts (`logferry verify isolation`).
    pub async fn tenant_sources(
        &self,
        table: &str,
    ) -> Result<(String, Vec<(Option<String>, Option<String>, u64)>)> {
        let table_ref = self.table_ref(table);
        let sql = format!("SELECT tenant_id, source, COUNT(*) FROM {table_ref} GROUP BY 1, 2");
        let rows = match self.query(&sql).await {
            Ok(r) => r,
            Err(Error::BigQuery { message, .. })
                if message.contains("Not found") || message.contains("not found") =>
            {
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        let mut out = Vec::with_capacity(rows.len());
        for mut r in rows {
            r.resize(3, None);
            let n = match &r[2] {
                Some(n) => n
                    .parse::<u64>()
                    .map_err(|_| bq_err("count", format!("COUNT(*) is not a count: {n:?}")))?,
                None => return Err(bq_err("count", "COUNT(*) is null")),
            };
            out.push((r[0].take(), r[1].take(), n));
        }
        Ok((table_ref.trim_matches('`').to_string(), out))
    }

    fn table_ref(&self, table: &str) -> String {
        format!(
            "`{}.{}.{table}`",
            self.settings.project, self.settings.dataset
        )
    }

    /// Rows of `table` whose time column lies in `[start, end)`.
    async fn count_range(
        &self,
        table: &str,
        column: &str,
        start: chrono::DateTime<chrono::Utc>,
        end: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64> {
        let rows = self
            .query(&format!(
                "SELECT COUNT(*) FROM {} WHERE `{column}` >= {} AND `{column}` < {}",
                self.table_ref(table),
                timestamp_literal(start),
                timestamp_literal(end)
            ))
            .await?;
        rows.first()
            .and_then(|r| r.first().cloned().flatten())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bq_err("count", "no count in the result"))
    }
}

impl BigQueryWarehouse {
    /// Reads a table into one Arrow batch of `schema` (for `logferry sql`),
    /// page by page, at most `bigquery.sql_max_rows` rows; `filter` is a
    /// WHERE clause BigQuery applies first.
    pub async fn read_table(
        &self,
        table: &str,
        schema: &SchemaRef,
        filter: Option<&str>,
    ) -> Result<arrow::record_batch::RecordBatch> {
        use arrow::array::{
            ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
            TimestampMicrosecondBuilder,
        };
        use arrow::datatypes::DataType;
        let cols: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Timestamp(_, _) => format!("UNIX_MICROS(`{0}`) AS `{0}`", f.name()),
                _ => format!("`{}`", f.name()),
            })
            .collect();
        let sql = format!(
            "SELECT {} FROM {}{}",
            cols.join(", "),
            self.table_ref(table),
            filter.map(|f| format!(" WHERE {f}")).unwrap_or_default()
        );
        let rows = match self.query_rows(&sql, self.settings.sql_max_rows).await {
            Ok(r) => r,
            Err(Error::BigQuery { message, .. })
                if message.contains("Not found") || message.contains("not found") =>
            {
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        let bad = |col: &str, v: &str| bq_err("read", format!("column {col}: cannot read {v:?}"));
        let mut arrays: Vec<ArrayRef> = Vec::new();
        for (i, f) in schema.fields().iter().enumerate() {
            let values = rows.iter().map(|r| r.get(i).cloned().flatten());
            let a: ArrayRef = match f.data_type() {
                DataType::Utf8 => {
                    let mut b = StringBuilder::new();
                    values.for_each(|v| b.append_option(v));
                    Arc::new(b.finish())
                }
                DataType::Int64 => {
                    let mut b = Int64Builder::new();
                    for v in values {
                        b.append_option(match v {
                            Some(s) => Some(s.parse().map_err(|_| bad(f.name(), &s))?),
                            None => None,
                        });
                    }
                    Arc::new(b.finish())
                }
                DataType::Float64 => {
                    let mut b = Float64Builder::new();
                    for v in values {
                        b.append_option(match v {
                            Some(s) => Some(s.parse().map_err(|_| bad(f.name(), &s))?),
                            None => None,
                        });
                    }
                    Arc::new(b.finish())
                }
                DataType::Boolean => {
                    let mut b = BooleanBuilder::new();
                    values.for_each(|v| b.append_option(v.map(|s| s == "true")));
                    Arc::new(b.finish())
                }
                DataType::Timestamp(_, tz) => {
                    let mut b = TimestampMicrosecondBuilder::new().with_timezone_opt(tz.clone());
                    for v in values {
                        b.append_option(match v {
                            Some(s) => Some(s.parse::<i64>().map_err(|_| bad(f.name(), &s))?),
                            None => None,
                        });
                    }
                    Arc::new(b.finish())
                }
                other => {
                    return Err(bq_err(
                        "read",
                        format!("column type {other} is not supported"),
                    ));
                }
            };
            arrays.push(a);
        }
        let nullable = Arc::new(arrow::datatypes::Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        Ok(arrow::record_batch::RecordBatch::try_new(nullable, arrays)?)
    }
}

#[async_trait]
impl Warehouse for BigQueryWarehouse {
    fn partitioning(&self) -> Partitioning {
        self.partitioning
    }

    async fn jobs_left(&self, table: &str) -> Result<Option<u64>> {
        Ok(Some(self.quota.left(table).await?))
    }

    async fn load(&self, job: &LoadJob) -> Result<LoadResult> {
        self.ensure_table(&job.table, &job.schema).await?;
        let column = job
            .time_column()
            .ok_or_else(|| Error::Config(format!("table {} has no timestamp column", job.table)))?;
        if job.files.is_empty() {
            // A load job needs a source: empty a replaced partition directly.
            if job.mode == WriteMode::Replace {
                let p: &PartitionId = &job.partition;
                self.query(&format!(
                    "DELETE FROM {} WHERE `{column}` >= {} AND `{column}` < {}",
                    self.table_ref(&job.table),
                    timestamp_literal(p.start),
                    timestamp_literal(p.end())
                ))
                .await?;
            }
            return Ok(LoadResult {
                job_id: job.job_id.clone(),
                rows: 0,
                already_done: false,
            });
        }
        // BigQuery's limits on one load job (quotas: 10,000 source URIs and
        // 15 TB per job): refuse a plan that cannot run instead of failing
        // half-way.
        if job.bytes > 15_000_000_000_000 {
            return Err(Error::LoadFailed {
                job_id: job.job_id.clone(),
                message: format!("{} bytes: a load job takes at most 15 TB", job.bytes),
            });
        }
        if job.files.len() > 10_000 {
            return Err(Error::LoadFailed {
                job_id: job.job_id.clone(),
                message: format!(
                    "{} source URIs: a load job takes at most 10,000",
                    job.files.len()
                ),
            });
        }
        let uris = job.files.iter().map(|f| self.export.uri(f)).collect();
        let (job_id, existed) = self.run_job(job, uris).await?;
        if self.settings.verify_loads {
            let (start, end) = match (job.mode, job.window) {
                (WriteMode::Append, Some(w)) => (w.start(), w.end()),
                _ => (job.partition.start, job.partition.end()),
            };
            let found = self.count_range(&job.table, &column, start, end).await?;
            let expected = job.expect_rows.unwrap_or(job.rows);
            if found != expected {
                return Err(Error::RowMismatch {
                    table: job.table.clone(),
                    partition: job
                        .window
                        .map(|w| w.to_string())
                        .unwrap_or_else(|| job.partition.key()),
                    found,
                    expected,
                });
            }
        }
        Ok(LoadResult {
            job_id,
            rows: job.rows,
            already_done: existed,
        })
    }

    async fn count_by_tenant(
        &self,
        table: &str,
        window: Option<Window>,
    ) -> Result<BTreeMap<String, u64>> {
        let filter = match window {
            Some(w) => format!(
                " WHERE `timestamp` >= {} AND `timestamp` < {}",
                timestamp_literal(w.start()),
                timestamp_literal(w.end())
            ),
            None => String::new(),
        };
        let sql = format!(
            "SELECT tenant_id, COUNT(*) FROM {}{filter} GROUP BY tenant_id",
            self.table_ref(table)
        );
        let rows = match self.query(&sql).await {
            Ok(r) => r,
            // No table yet: nothing loaded.
            Err(Error::BigQuery { message, .. })
                if message.contains("Not found") || message.contains("not found") =>
            {
                return Ok(BTreeMap::new());
            }
            Err(e) => return Err(e),
        };
        let mut out = BTreeMap::new();
        for r in rows {
            if let (Some(Some(t)), Some(Some(n))) = (r.first(), r.get(1)) {
                let n: u64 = n.parse().map_err(|_| {
                    bq_err("count", format!("COUNT(*) of {t} is not a count: {n:?}"))
                })?;
                out.insert(t.clone(), n);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use logferry_core::schema::log_record_schema;

    fn settings() -> BigQuerySettings {
        BigQuerySettings {
            project: "p".into(),
            dataset: "d".into(),
            location: "US".into(),
            endpoint: "http://x".into(),
            authenticate: false,
            credentials: None,
            partition_expiration: None,
            poll_initial: Duration::from_millis(1),
            poll_max: Duration::from_millis(2),
            job_timeout: Duration::from_secs(1),
            verify_loads: true,
            max_attempts: 3,
            request_timeout: Duration::from_secs(5),
            retry_budget: Duration::from_secs(30),
            quotas: LoadQuotas {
                jobs_per_table_per_day: 1500,
                jobs_per_project_per_day: 100_000,
                table_updates_per_10s: 5,
                other_jobs_per_table_per_day: 0,
                headroom: 0.1,
            },
            sql_max_rows: 1000,
        }
    }

    #[test]
    fn replace_loads_into_the_partition_decorator() {
        let w = Window::parse("2026-11-25T10").unwrap();
        let mut job = LoadJob {
            job_id: "j1".into(),
            table: "log_records".into(),
            partition: PartitionId::of(w, Partitioning::Day),
            mode: WriteMode::Replace,
            files: vec!["a".into()],
            schema: log_record_schema(),
            rows: 1,
            bytes: 1,
            window: None,
            expect_rows: None,
        };
        let v = serde_json::to_value(load_request(
            &settings(),
            &job,
            "j1",
            vec!["gs://b/a".into()],
        ))
        .unwrap();
        let load = &v["configuration"]["load"];
        assert_eq!(load["destinationTable"]["tableId"], "log_records$20261125");
        assert_eq!(load["writeDisposition"], "WRITE_TRUNCATE");
        assert_eq!(load["sourceFormat"], "PARQUET");
        assert_eq!(load["sourceUris"][0], "gs://b/a");
        assert_eq!(v["jobReference"]["jobId"], "j1");
        job.partition = PartitionId::of(w, Partitioning::Hour);
        let v = serde_json::to_value(load_request(&settings(), &job, "j1", vec![])).unwrap();
        assert_eq!(
            v["configuration"]["load"]["destinationTable"]["tableId"],
            "log_records$2026112510"
        );
        job.mode = WriteMode::Append;
        let v = serde_json::to_value(load_request(&settings(), &job, "j1", vec![])).unwrap();
        assert_eq!(
            v["configuration"]["load"]["destinationTable"]["tableId"],
            "log_records"
        );
        assert_eq!(
            v["configuration"]["load"]["writeDisposition"],
            "WRITE_APPEND"
        );
    }
}
