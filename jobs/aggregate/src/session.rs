//! DataFusion sessions: one configuration for every query logferry runs, and
//! the lake's stores registered under logferry's own URL schemes.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::{SessionConfig, SessionContext};
use object_store::ObjectStore;
use object_store::limit::LimitStore;
use url::Url;

use crate::error::{Error, Result};

/// URL scheme under which a store is registered: `lf-<name>://<name>/`.
pub fn store_url(name: &str) -> String {
    format!("lf-{name}://{name}/")
}

/// A session with logferry's settings: plain `Utf8` strings (not views), so
/// that query results match the table schemas.
pub fn new_session() -> SessionContext {
    let config = SessionConfig::new()
        .with_target_partitions(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        )
        .set_bool(
            "datafusion.execution.parquet.schema_force_view_types",
            false,
        )
        .set_bool("datafusion.sql_parser.map_string_types_to_utf8view", false)
        .set_str("datafusion.sql_parser.dialect", "generic");
    SessionContext::new_with_config(config)
}

/// Requests a query has in flight on one store at most. A table over an
/// explicit list of objects asks for each object's metadata at once: a
/// window of thousands of objects would otherwise hold as many files open
/// (the local store) or connections (S3) as it has objects.
pub const MAX_STORE_REQUESTS: usize = 32;

/// Registers a store under [`store_url`]`(name)`, with at most
/// [`MAX_STORE_REQUESTS`] requests in flight.
pub fn register_store(ctx: &SessionContext, name: &str, store: Arc<dyn ObjectStore>) -> Result<()> {
    let url = Url::parse(&store_url(name))
        .map_err(|e| Error::Internal(format!("store URL for {name}: {e}")))?;
    ctx.register_object_store(&url, Arc::new(LimitStore::new(store, MAX_STORE_REQUESTS)));
    Ok(())
}

/// A table over Parquet objects of a registered store: either every object
/// under `prefix` (recursively), or exactly `files`. No files makes an empty
/// table of `schema`.
pub fn parquet_table(
    store_name: &str,
    schema: SchemaRef,
    prefix: Option<&str>,
    files: &[String],
) -> Result<Arc<dyn datafusion::catalog::TableProvider>> {
    let base = store_url(store_name);
    let urls: Vec<ListingTableUrl> = match prefix {
        Some(p) => vec![ListingTableUrl::parse(format!(
            "{base}{}/",
            p.trim_end_matches('/')
        ))?],
        None => files
            .iter()
            .map(|f| ListingTableUrl::parse(format!("{base}{f}")))
            .collect::<datafusion::error::Result<_>>()?,
    };
    if urls.is_empty() {
        return Ok(Arc::new(MemTable::try_new(schema, vec![vec![]])?));
    }
    let opts =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(opts)
        .with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}

fn plain(dt: &DataType) -> DataType {
    match dt {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        other => other.clone(),
    }
}

/// The schema with view and large string types replaced by plain ones.
pub fn plain_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), plain(f.data_type()), f.is_nullable()))
            .collect::<Vec<_>>(),
    ))
}

/// Casts a batch to `target` (same column names and order): view types to
/// plain ones, and nullability as the target says (an error if a required
/// column holds nulls).
pub fn conform(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch> {
    let src = batch.schema();
    if src.fields().len() != target.fields().len() {
        return Err(Error::Internal(format!(
            "query returned {} columns, expected {}",
            src.fields().len(),
            target.fields().len()
        )));
    }
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(target.fields().len());
    for (i, f) in target.fields().iter().enumerate() {
        let sf = src.field(i);
        if sf.name() != f.name() {
            return Err(Error::Internal(format!(
                "query returned column {} where {} was expected",
                sf.name(),
                f.name()
            )));
        }
        let c = batch.column(i);
        cols.push(if c.data_type() == f.data_type() {
            c.clone()
        } else {
            cast(c, f.data_type())?
        });
    }
    Ok(RecordBatch::try_new(target.clone(), cols)?)
}
