//! Aggregates every pending window of a lake with the built-in program and
//! prints each window's time and counts: for profiling the aggregate job
//! alone (`cargo run --release -p logferry-aggregate --example aggregate_lake
//! -- LAKE_DIR [MEMORY_LIMIT_BYTES] [SPILL_DIR]`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use logferry_aggregate::{Aggregator, Outcome, SqlProgram};
use logferry_core::config::{AggregateSettings, ParquetSettings};
use logferry_core::partition::parse_partition;
use logferry_core::storage::Location;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let lake = Location::open(
        args.get(1)
            .ok_or("usage: aggregate_lake LAKE_DIR [LIMIT] [SPILL]")?,
    )?;
    let limits = AggregateSettings {
        memory_limit: args.get(2).map_or(Ok(512 << 20), |a| a.parse())?,
        spill_dir: args
            .get(3)
            .map_or_else(std::env::temp_dir, std::path::PathBuf::from),
        object_rows: 524_288,
        zstd_level: std::env::var("ZSTD_LEVEL").map_or(Ok(6), |v| v.parse())?,
    };
    let parquet = ParquetSettings {
        zstd_level: 1,
        row_group_rows: 131_072,
    };
    let agg = Aggregator::new(lake, Arc::new(SqlProgram::builtin()?), &parquet, &limits)?;
    let mut windows = BTreeSet::new();
    for key in agg.ledger().list("pending").await? {
        if let Some(w) = parse_partition(&object_store::path::Path::from(key.as_str())).window {
            windows.insert(w);
        }
    }
    let all = Instant::now();
    for w in windows {
        let t = Instant::now();
        match agg.aggregate(w).await? {
            Outcome::Done(r) => {
                let rows: u64 = r.counts.values().map(|c| c.input).sum();
                println!(
                    "{w}: {rows} rows in {} ms, spilled {} bytes, {} curated objects",
                    t.elapsed().as_millis(),
                    r.spilled_bytes,
                    r.curated.len()
                );
            }
            other => println!("{w}: {other:?}"),
        }
    }
    println!(
        "all: {} ms; pool peak {} MiB",
        all.elapsed().as_millis(),
        agg.engine().peak_memory() >> 20
    );
    Ok(())
}
