//! Command-line interface. Runtime knobs are flags; what the pipeline means
//! (tenants, limits, locations, schedules) lives in the configuration.

pub mod print;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// logferry: multi-tenant logs from AWS sources to a warehouse, in batches, on
/// Arrow and Parquet.
#[derive(Debug, Parser)]
#[command(name = "logferry", version, propagate_version = true)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: Global,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Root of the embedded default (lake, export store and warehouse).
    #[arg(
        long,
        global = true,
        env = "LOGFERRY_DATA_DIR",
        default_value = "./logferry-data"
    )]
    pub data_dir: PathBuf,
    /// TOML configuration file (default: <data-dir>/logferry.toml if it exists).
    #[arg(long, global = true, env = "LOGFERRY_CONFIG")]
    pub config: Option<PathBuf>,
    /// More logging (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// Input formats of `forward`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum InputFormat {
    /// One JSON record per line; the tenant comes from the stream field.
    Ndjson,
    /// One base64(gzip(CloudWatch Logs subscription envelope)) per line.
    Cloudwatch,
}

/// Output formats of `sql`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    /// Aligned table.
    Table,
    /// CSV with a header.
    Csv,
    /// One JSON array of row objects.
    Json,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a multi-tenant workload and run the whole pipeline on it,
    /// locally, then print what happened.
    Demo {
        /// Records to generate.
        #[arg(long, default_value_t = 200_000)]
        records: u64,
        /// Tenants.
        #[arg(long, default_value_t = 8)]
        tenants: usize,
        /// Seed of the generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Share of bad items.
        #[arg(long, default_value_t = 0.02)]
        bad_fraction: f64,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a seeded multi-tenant workload (NDJSON and CloudWatch Logs
    /// payload files, ground-truth labels) and a config with its tenants.
    Generate {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Items to generate.
        #[arg(long, default_value_t = 100_000)]
        records: u64,
        /// Tenants.
        #[arg(long, default_value_t = 8)]
        tenants: usize,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Share of bad items.
        #[arg(long, default_value_t = 0.02)]
        bad_fraction: f64,
        /// Share of exact redeliveries.
        #[arg(long, default_value_t = 0.01)]
        duplicate_fraction: f64,
        /// Share of items written as CloudWatch Logs envelopes.
        #[arg(long, default_value_t = 0.3)]
        cloudwatch_share: f64,
        /// Time the good records cover, up to now (e.g. 3h, 30d; at most
        /// forward.max_age).
        #[arg(long, default_value = "3h")]
        span: String,
    },
    /// Decode, validate and land an input (a file, standard input, the
    /// inbox, or the tenants' Kinesis streams) in the lake.
    Forward {
        /// Input file, or - for standard input.
        #[arg(long, required_unless_present_any = ["kinesis", "inbox"], conflicts_with_all = ["kinesis", "inbox"])]
        input: Option<String>,
        /// Forward every new object of the inbox ([daemon] inbox) once.
        #[arg(long, conflicts_with = "kinesis")]
        inbox: bool,
        /// Input format (files and standard input).
        #[arg(long, value_enum, default_value = "ndjson")]
        format: InputFormat,
        /// Read every [[tenant]] stream from Kinesis instead of a file.
        #[arg(long)]
        kinesis: bool,
        /// With --kinesis: read every shard up to its current tip, then exit
        /// (for schedules). Without it, follow the streams until SIGTERM or
        /// SIGINT, then flush, checkpoint and exit.
        #[arg(long, requires = "kinesis")]
        once: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Aggregate, export and load every window with unprocessed data, or one
    /// window. Exits 1 when a window or day failed (the others are done).
    Run {
        /// One window, YYYY-MM-DDTHH (UTC), tried whatever its failures.
        #[arg(long)]
        window: Option<String>,
        /// Append increments to open windows (within warehouse.seal_after)
        /// instead of loading them whole: what the daemon's `run` job does.
        #[arg(long)]
        micro_batch: bool,
        /// Try failing windows now, whatever their backoff, those given up
        /// on after run.max_attempts failures included.
        #[arg(long)]
        retry_failed: bool,
        /// Daily partitions: seal every day with exported windows now, before
        /// its lateness allowance (backfills).
        #[arg(long)]
        seal: bool,
        /// Wait for windows another run is working on, instead of leaving
        /// them to it (either way the exit status is 0).
        #[arg(long)]
        wait: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a read-only SQL query over landing, dlq, curated, the rollups and
    /// the warehouse.
    Sql {
        /// The query.
        query: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// Per tenant: received = loaded + dead_lettered + duplicates? Exit status 0
    /// only when it holds for every tenant.
    Reconcile {
        /// One window, YYYY-MM-DDTHH (UTC).
        #[arg(long)]
        window: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Checks that hold the pipeline to its promises.
    Verify {
        /// What to check.
        #[command(subcommand)]
        command: VerifyCommand,
    },
    /// Tools for the test suite and for operators.
    Debug {
        /// What to do.
        #[command(subcommand)]
        command: DebugCommand,
    },
    /// Windows and the state of each stage.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run until SIGTERM: follow the Kinesis streams and the inbox, fire the
    /// [[schedule]] entries, serve /healthz, /readyz and /metrics.
    Daemon {
        /// Address of /healthz, /readyz and /metrics (default: daemon.listen).
        #[arg(long, env = "LOGFERRY_LISTEN")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Run one [[schedule]]'s job once (what crontab, systemd and ECS
    /// targets call). Exits 1 when it failed.
    Job {
        /// The schedule's name.
        name: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The schedules: next fire times, or their export for EventBridge
    /// Scheduler, CloudFormation, Terraform, crontab or systemd.
    Schedule {
        /// What to do.
        #[command(subcommand)]
        command: ScheduleCommand,
    },
    /// The load plan of the configuration against BigQuery's quotas.
    /// Exits 1 when it does not fit.
    Plan {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The performance guide's KPIs over a range, from the run reports: one
    /// line each, pass / warn / fail. Exits 1 when one is past its critical
    /// threshold.
    Kpi {
        /// How far back (e.g. 24h, 30m, 7d).
        #[arg(long, default_value = "24h")]
        since: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// What the pipeline cost per million records over a range, from its
    /// own counts and the configured list prices, beside BigQuery streaming
    /// inserts and the Storage Write API.
    Cost {
        /// How far back (e.g. 24h, 30m, 7d).
        #[arg(long, default_value = "24h")]
        since: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write one self-contained HTML page with charts: latency, throughput,
    /// dead letters, lag, stage durations, cost.
    Report {
        /// How far back (e.g. 24h, 30m, 7d).
        #[arg(long, default_value = "24h")]
        since: String,
        /// The HTML file to write.
        #[arg(long, default_value = "logferry-report.html")]
        out: PathBuf,
    },
    /// Print dashboards and alerts made from the metric catalogue and the
    /// KPI thresholds.
    Dashboards {
        /// What to print.
        #[command(flatten)]
        what: DashboardKind,
    },
    /// Drive the pipeline with a k6-style scenario (a TOML file or a
    /// built-in name), wait until every record is queryable, reconcile and
    /// print k6's end-of-test summary. Exits 99 when a threshold failed.
    Loadtest(LoadtestArgs),
    /// Recompute (or reload, or run a query over) a range of days and
    /// replace those partitions; resumable.
    Backfill(BackfillArgs),
    /// The dead-letter queue: summary and replay.
    Dlq {
        /// What to do.
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// A DataFusion Ballista cluster for `logferry sql` and `backfill --sql`
    /// ([cluster] scheduler = "df://host:50050"): run its scheduler or an
    /// executor, each with the pipeline's configuration, until stopped.
    /// Needs a build with `--features ballista`.
    Cluster {
        /// What to run.
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// The infrastructure of this configuration, as code.
    Deploy {
        /// What to do.
        #[command(subcommand)]
        command: DeployCommand,
    },
}

/// `logferry deploy ...`.
#[derive(Debug, Subcommand)]
pub enum DeployCommand {
    /// Write the AWS (CloudFormation or Terraform) and GCP (Terraform)
    /// infrastructure of this configuration's tenants, schedules, stores and
    /// alarms under --out, and the configuration the Lambda zips carry.
    Render {
        /// AWS: the central account and one client account per tenant.
        #[arg(long, value_enum)]
        aws: Option<crate::deploy::AwsFormat>,
        /// GCP: the export bucket, the dataset and its tables, the
        /// exporter's service account.
        #[arg(long, value_enum)]
        gcp: Option<crate::deploy::GcpFormat>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Print what was written as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `logferry cluster ...`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// The scheduler: plans the queries clients send and hands their tasks
    /// to the executors.
    Scheduler {
        /// Address to listen on (what clients' df:// URLs and executors name).
        #[arg(long, default_value = "0.0.0.0:50050")]
        bind: std::net::SocketAddr,
    },
    /// An executor: runs tasks on the lake under [aggregate] memory_limit,
    /// spilling and keeping shuffle files under [aggregate] spill_dir.
    Executor {
        /// The scheduler, host:port.
        #[arg(long, default_value = "localhost:50050")]
        scheduler: String,
        /// Address to bind.
        #[arg(long, default_value = "0.0.0.0")]
        bind_host: String,
        /// Host name the scheduler and the other executors reach this one by
        /// (default: what the scheduler sees).
        #[arg(long)]
        external_host: Option<String>,
        /// Arrow Flight port: shuffle data.
        #[arg(long, default_value_t = 50051)]
        port: u16,
        /// gRPC port: tasks.
        #[arg(long, default_value_t = 50052)]
        grpc_port: u16,
        /// Tasks run at once; 0 for one per core.
        #[arg(long, default_value_t = 0)]
        slots: usize,
    },
}

/// What `logferry dashboards` prints.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct DashboardKind {
    /// The metric catalogue every one of these is made from: name, kind,
    /// unit, labels, the guide's row and target, the EMF name.
    #[arg(long)]
    pub catalog: bool,
    /// A CloudWatch dashboard body (JSON).
    #[arg(long)]
    pub cloudwatch: bool,
    /// A Cloud Monitoring dashboard (JSON, mosaicLayout).
    #[arg(long)]
    pub gcp: bool,
    /// Prometheus alerting rules (YAML).
    #[arg(long)]
    pub alerts: bool,
    /// CloudWatch alarms (a CloudFormation template).
    #[arg(long)]
    pub alarms: bool,
}

/// Where a load test sends its records.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LoadTarget {
    /// The embedded default: the inbox, the daemon, the local warehouse.
    Embedded,
    /// PutRecords into the tenants' Kinesis streams, the daemon reading
    /// them, GCS and BigQuery (the configuration points at them).
    Emulators,
}

/// `logferry loadtest`.
#[derive(Debug, Args)]
pub struct LoadtestArgs {
    /// A scenario TOML file, or a built-in name (client-log-generation,
    /// multi-tenant-load, end-to-end-pipeline).
    pub scenario: String,
    /// Durations multiplied by this (0.01: a 12-minute scenario in 7.2 s);
    /// rates are kept.
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Where the records go.
    #[arg(long, value_enum, default_value = "embedded")]
    pub target: LoadTarget,
    /// Write the HTML report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Longest wait, after the last record was sent, for every record to
    /// be queryable; what is not by then is declared lost.
    #[arg(long, default_value = "120s")]
    pub drain_timeout: String,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `logferry backfill`.
#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// First day, YYYY-MM-DD (UTC).
    #[arg(long)]
    pub from: chrono::NaiveDate,
    /// Last day, YYYY-MM-DD (UTC), included.
    #[arg(long)]
    pub to: chrono::NaiveDate,
    /// Only this tenant's records (repeat for several).
    #[arg(long = "tenant")]
    pub tenants: Vec<String>,
    /// Only these tables (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub tables: Vec<String>,
    /// Load the exported runs again without recomputing (a partition lost).
    #[arg(long, conflicts_with = "sql")]
    pub reload: bool,
    /// Run this SQL file over the lake per window and load its result into
    /// --table.
    #[arg(long, requires = "table")]
    pub sql: Option<PathBuf>,
    /// Destination table of --sql.
    #[arg(long, requires = "sql")]
    pub table: Option<String>,
    /// BigQuery JSON schema file of --table (else the query's result's).
    #[arg(long, requires = "sql")]
    pub schema: Option<PathBuf>,
    /// Print the partitions, jobs and bytes against the quotas, and stop.
    #[arg(long)]
    pub plan: bool,
    /// Leave it to the daemon's backfill job (spread over days if need be).
    #[arg(long, conflicts_with = "plan")]
    pub queue: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `logferry schedule ...`.
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Each schedule's next fire times.
    Show {
        /// Fire times per schedule.
        #[arg(long, default_value_t = 3)]
        count: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the schedules for another scheduler.
    Export {
        /// Format.
        #[arg(long, value_enum)]
        format: crate::schedule::Format,
        /// What EventBridge Scheduler invokes.
        #[arg(long, value_enum, default_value = "lambda")]
        target: crate::schedule::Target,
        /// The logferry-lambda function ARN (lambda) or ECS cluster ARN (ecs).
        #[arg(long)]
        target_arn: Option<String>,
        /// Role EventBridge Scheduler assumes.
        #[arg(long)]
        role_arn: Option<String>,
        /// SQS queue for invocations that could not be delivered.
        #[arg(long)]
        dead_letter_arn: Option<String>,
        /// ECS task definition (target ecs).
        #[arg(long)]
        task_definition_arn: Option<String>,
        /// How crontab and systemd run logferry.
        #[arg(long, default_value = "/usr/local/bin/logferry")]
        command: String,
        /// systemd: write the unit files into this directory.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Filters of `logferry dlq`.
#[derive(Debug, Args)]
pub struct DlqFilter {
    /// forward or aggregate.
    #[arg(long)]
    pub stage: Option<String>,
    /// Reason code (repeat for several).
    #[arg(long = "reason")]
    pub reasons: Vec<String>,
    /// Tenant key (_unknown for items refused before a tenant was known).
    #[arg(long)]
    pub tenant: Option<String>,
    /// First hour, YYYY-MM-DDTHH.
    #[arg(long)]
    pub from: Option<String>,
    /// Last hour, YYYY-MM-DDTHH, included.
    #[arg(long)]
    pub to: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `logferry dlq ...`.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Dead letters by stage, reason, tenant and hour.
    Ls(DlqFilter),
    /// Forward refusals decoded again with the current configuration: what
    /// passes lands once, what fails stays with its current reason.
    Replay(DlqFilter),
}

/// `logferry verify ...`.
#[derive(Debug, Subcommand)]
pub enum VerifyCommand {
    /// Every row of landing, curated, the DLQ, the rollups and the warehouse
    /// (BigQuery too) sits with its own tenant: the tenant of its partition,
    /// and the one its source maps to. Exit status 1, with the offending
    /// paths, when one does not.
    Isolation {
        /// Only this window's lake partitions, YYYY-MM-DDTHH (UTC).
        #[arg(long)]
        window: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `logferry debug ...`.
#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Print every crash point's name, one per line (with `-v`, what has and
    /// has not happened there). `LOGFERRY_CRASH_AT=<point>` aborts a
    /// `failpoints` build at that point.
    KillPoints,
    /// Run a Lambda `bootstrap` against a local Lambda Runtime API (the
    /// 2018-06-01 protocol, on loopback), hand it the events, print its
    /// answers and its cold start (process start to its first answer).
    LambdaInvoke {
        /// The function's `bootstrap` (e.g. target/lambda/x86_64/logferry-forwarder/bootstrap).
        bootstrap: PathBuf,
        /// Event files (JSON), handed in order to the same process.
        #[arg(required = true)]
        events: Vec<PathBuf>,
        /// Environment of the function, KEY=VALUE (repeatable), on top of
        /// Lambda's own and this process's.
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Fresh processes to start, each handed every event: the cold
        /// start is reported per run and as the median.
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// Longest wait for one answer.
        #[arg(long, default_value = "60s", value_parser = duration_arg)]
        timeout: std::time::Duration,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A duration such as `60s`, `2m` or `500ms`.
fn duration_arg(s: &str) -> Result<std::time::Duration, String> {
    logferry_core::config::parse_duration("--timeout", s).map_err(|e| e.to_string())
}
