//! Dead-letter entries: the Arrow builder shaped by `schemas/dead_letter.json`,
//! shared by every stage that refuses items.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::record_batch::RecordBatch;

use crate::schema::dead_letter_schema;

fn ts_builder(cap: usize) -> TimestampMicrosecondBuilder {
    TimestampMicrosecondBuilder::with_capacity(cap).with_timezone("UTC")
}

/// One refused item.
#[derive(Debug)]
pub struct DlqRow<'r> {
    /// `forward` or `aggregate`.
    pub stage: &'r str,
    /// Reason code.
    pub reason: &'r str,
    /// Detail.
    pub detail: &'r str,
    /// Tenant key (`_unknown` when none was known).
    pub tenant_key: &'r str,
    /// Stream or log group, when known.
    pub source: Option<&'r str>,
    /// Event id, when known.
    pub event_id: Option<&'r str>,
    /// Event time, when known.
    pub timestamp_us: Option<i64>,
    /// Receive time.
    pub ingest_us: i64,
    /// Input name.
    pub input: &'r str,
    /// Position in the input.
    pub position: &'r str,
    /// Raw payload (the caller cuts it to the limit).
    pub raw: &'r [u8],
    /// Full payload length.
    pub raw_bytes: u64,
    /// What `raw` holds (`schemas/dead_letter.json`), for replay.
    pub payload: Option<&'r str>,
}

/// Columns of `dead_letter` under construction.
pub struct DlqBuilder {
    stage: StringBuilder,
    reason: StringBuilder,
    detail: StringBuilder,
    tenant_id: StringBuilder,
    source: StringBuilder,
    event_id: StringBuilder,
    timestamp: TimestampMicrosecondBuilder,
    ingest_time: TimestampMicrosecondBuilder,
    input: StringBuilder,
    position: StringBuilder,
    raw: BinaryBuilder,
    raw_bytes: Int64Builder,
    raw_truncated: BooleanBuilder,
    payload: StringBuilder,
    rows: usize,
    bytes: usize,
}

impl std::fmt::Debug for DlqBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DlqBuilder")
            .field("rows", &self.rows)
            .finish()
    }
}

impl Default for DlqBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl DlqBuilder {
    /// Empty builder.
    pub fn new() -> Self {
        DlqBuilder {
            stage: StringBuilder::new(),
            reason: StringBuilder::new(),
            detail: StringBuilder::new(),
            tenant_id: StringBuilder::new(),
            source: StringBuilder::new(),
            event_id: StringBuilder::new(),
            timestamp: ts_builder(64),
            ingest_time: ts_builder(64),
            input: StringBuilder::new(),
            position: StringBuilder::new(),
            raw: BinaryBuilder::new(),
            raw_bytes: Int64Builder::new(),
            raw_truncated: BooleanBuilder::new(),
            payload: StringBuilder::new(),
            rows: 0,
            bytes: 0,
        }
    }

    /// Appends one entry.
    pub fn push(&mut self, r: &DlqRow<'_>) {
        self.stage.append_value(r.stage);
        self.reason.append_value(r.reason);
        self.detail.append_value(r.detail);
        self.tenant_id.append_value(r.tenant_key);
        self.source.append_option(r.source);
        self.event_id.append_option(r.event_id);
        self.timestamp.append_option(r.timestamp_us);
        self.ingest_time.append_value(r.ingest_us);
        self.input.append_value(r.input);
        self.position.append_value(r.position);
        self.raw.append_value(r.raw);
        self.raw_bytes.append_value(r.raw_bytes as i64);
        self.raw_truncated
            .append_value((r.raw.len() as u64) < r.raw_bytes);
        self.payload.append_option(r.payload);
        self.rows += 1;
        self.bytes += 64 + r.detail.len() + r.raw.len() + r.input.len();
    }

    /// Rows appended since the last finish.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Approximate bytes appended since the last finish.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Builds the batch and resets the builder.
    pub fn finish(&mut self) -> arrow::error::Result<RecordBatch> {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.stage.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.detail.finish()),
            Arc::new(self.tenant_id.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.event_id.finish()),
            Arc::new(self.timestamp.finish()),
            Arc::new(self.ingest_time.finish()),
            Arc::new(self.input.finish()),
            Arc::new(self.position.finish()),
            Arc::new(self.raw.finish()),
            Arc::new(self.raw_bytes.finish()),
            Arc::new(self.raw_truncated.finish()),
            Arc::new(self.payload.finish()),
        ];
        self.rows = 0;
        self.bytes = 0;
        RecordBatch::try_new(dead_letter_schema(), cols)
    }
}
