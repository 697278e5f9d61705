//! `logferry sql`: read-only queries over the lake and the warehouse.

use std::io::Write;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::datasource::MemTable;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement;
use object_store::path::Path;

use logferry_aggregate::catalog::{LakeFiles, register_lake};
use logferry_aggregate::session::{parquet_table, register_store};
use logferry_core::config::ClusterTarget;
use logferry_core::partition::Window;
use logferry_core::schema::{LOG_RECORDS_TABLE, log_record_schema};
use logferry_core::storage::parquet_schema;
use logferry_export::WarehouseHandle;

use crate::cli::OutputFormat;
use crate::context::Ctx;
use crate::error::{Error, Result};

/// A session with every table registered: `landing`, `dlq`, `curated`, the
/// rollups, `warehouse` (the loaded log records) and, for the local
/// warehouse, `warehouse_<rollup>`. With BigQuery, `warehouse` is read from
/// BigQuery when a query names it.
pub async fn session(ctx: &Ctx, window: Option<Window>) -> Result<(SessionContext, LakeFiles)> {
    session_for(ctx, window, None).await
}

/// Like [`session`]; `query` (when given) decides whether a remote warehouse
/// table is fetched at all.
pub async fn session_for(
    ctx: &Ctx,
    window: Option<Window>,
    query: Option<&str>,
) -> Result<(SessionContext, LakeFiles)> {
    session_on(ctx, &ClusterTarget::Local, window, query).await
}

/// Like [`session_for`], with the queries run where `target` says: in this
/// process, or on a Ballista cluster (`[cluster] scheduler`).
pub async fn session_on(
    ctx: &Ctx,
    target: &ClusterTarget,
    window: Option<Window>,
    query: Option<&str>,
) -> Result<(SessionContext, LakeFiles)> {
    // Ad-hoc queries run under the aggregate's memory limit, spilling past
    // it: a query over months of the lake does not take the machine.
    let s = crate::cluster::session(ctx, target).await?;
    let files = register_lake(&s, &ctx.lake, window).await?;
    match &ctx.warehouse {
        WarehouseHandle::Local(wh) => {
            let loc = wh.location();
            register_store(&s, "warehouse", loc.store.clone())?;
            let mut by_table: std::collections::BTreeMap<String, Vec<String>> = Default::default();
            for p in wh.partitions(None).await? {
                if window.is_none_or(|w| p.partition.contains(w)) {
                    by_table
                        .entry(p.table.clone())
                        .or_default()
                        .extend(p.files().cloned());
                }
            }
            let records = by_table.remove(LOG_RECORDS_TABLE).unwrap_or_default();
            s.register_table(
                "warehouse",
                parquet_table("warehouse", log_record_schema(), None, &records)?,
            )?;
            for (table, paths) in by_table {
                if let Some(first) = paths.first() {
                    let schema =
                        parquet_schema(loc.store.as_ref(), &Path::from(first.as_str())).await?;
                    s.register_table(
                        format!("warehouse_{table}").as_str(),
                        parquet_table("warehouse", schema, None, &paths)?,
                    )?;
                }
            }
        }
        WarehouseHandle::BigQuery(bq) => {
            let wanted = query.is_none_or(|q| q.to_ascii_lowercase().contains("warehouse"));
            if *target != ClusterTarget::Local {
                // The rows are fetched into this process: a table a cluster
                // cannot be sent.
                if wanted {
                    return Err(Error::Config(
                        "the `warehouse` table is read from BigQuery into this process and \
                         cannot be sent to a Ballista cluster: query the lake's tables there, \
                         or run this query with [cluster] scheduler = \"\""
                            .into(),
                    ));
                }
                return Ok((s, files));
            }
            let batch = if wanted {
                bq.read_table(LOG_RECORDS_TABLE, &log_record_schema(), None)
                    .await?
            } else {
                RecordBatch::new_empty(log_record_schema())
            };
            s.register_table(
                "warehouse",
                std::sync::Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]])?),
            )?;
        }
    }
    Ok((s, files))
}

/// Refuses anything but a single query.
pub fn ensure_read_only(query: &str) -> Result<()> {
    let statements =
        DFParser::parse_sql(query).map_err(|e| Error::Config(format!("logferry sql: {e}")))?;
    if statements.len() != 1 {
        return Err(Error::Config(format!(
            "logferry sql takes exactly one statement, got {}",
            statements.len()
        )));
    }
    fn is_query(s: &DfStatement) -> bool {
        match s {
            DfStatement::Statement(s) => match s.as_ref() {
                Statement::Query(_) => true,
                Statement::Explain { statement, .. } => {
                    matches!(statement.as_ref(), Statement::Query(_))
                }
                _ => false,
            },
            DfStatement::Explain(e) => is_query(&e.statement),
            _ => false,
        }
    }
    if !is_query(&statements[0]) {
        return Err(Error::Config(format!(
            "logferry sql is read-only: only queries (SELECT, WITH, VALUES, EXPLAIN SELECT) are \
             allowed, not: {}",
            query.trim().chars().take(60).collect::<String>()
        )));
    }
    Ok(())
}

/// Runs a read-only query.
pub async fn query(s: &SessionContext, query: &str) -> Result<Vec<RecordBatch>> {
    Ok(query_with_schema(s, query).await?.1)
}

/// Runs a read-only query; also returns the result's schema (which an empty
/// result has no batch to carry).
pub async fn query_with_schema(
    s: &SessionContext,
    query: &str,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    ensure_read_only(query)?;
    let opts = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = s.sql_with_options(query, opts).await?;
    let schema: SchemaRef = std::sync::Arc::new(df.schema().as_arrow().clone());
    Ok((schema, df.collect().await?))
}

/// Writes a result in a format.
pub fn write(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<()> {
    let empty;
    let batches = if batches.is_empty() {
        empty = [RecordBatch::new_empty(schema.clone())];
        &empty[..]
    } else {
        batches
    };
    match format {
        OutputFormat::Table => {
            let table = arrow::util::pretty::pretty_format_batches(batches)?;
            writeln!(out, "{table}").map_err(|e| Error::io("the output", e))?;
        }
        OutputFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(out);
            for b in batches {
                w.write(b)?;
            }
        }
        OutputFormat::Json => {
            let mut buf = Vec::new();
            {
                let mut w = arrow::json::ArrayWriter::new(&mut buf);
                for b in batches {
                    w.write(b)?;
                }
                w.finish()?;
            }
            if buf.is_empty() || batches.iter().all(|b| b.num_rows() == 0) {
                buf.clear();
                buf.extend_from_slice(b"[]");
            }
            out.write_all(&buf)
                .and_then(|()| writeln!(out))
                .map_err(|e| Error::io("the output", e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_queries_pass() {
        for ok in [
            "SELECT 1",
            "with a as (select 1) select * from a",
            "VALUES (1)",
            "EXPLAIN SELECT * FROM landing",
        ] {
            ensure_read_only(ok).unwrap();
        }
        for bad in [
            "INSERT INTO curated VALUES (1)",
            "DROP TABLE landing",
            "CREATE TABLE x AS SELECT 1",
            "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/tmp'",
            "COPY (SELECT 1) TO '/tmp/x.parquet'",
            "SET datafusion.execution.batch_size = 1",
            "SELECT 1; DROP TABLE landing",
            "EXPLAIN ANALYZE INSERT INTO curated VALUES (1)",
            "DELETE FROM curated",
        ] {
            let e = ensure_read_only(bad).unwrap_err();
            assert!(!e.to_string().is_empty(), "{bad}");
        }
    }
}
