//! Command-line interface. Runtime knobs are flags; what the pipeline means
//! (tenants, limits, locations) lives in the configuration.

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
    },
    /// Decode, validate and land an input (a file, standard input, or the
    /// tenants' Kinesis streams) in the lake.
    Forward {
        /// Input file, or - for standard input.
        #[arg(long, required_unless_present = "kinesis", conflicts_with = "kinesis")]
        input: Option<String>,
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
    /// Aggregate, export and load every window with unprocessed data, or one window.
    Run {
        /// One window, YYYY-MM-DDTHH (UTC).
        #[arg(long)]
        window: Option<String>,
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
}
