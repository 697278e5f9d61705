//! Table schemas: BigQuery JSON schema files in `schemas/` are the source of
//! truth; the Arrow schemas (and so the Parquet files) are derived from them.

use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `schemas/log_record.json`, built into the binary.
pub const LOG_RECORD_JSON: &str = include_str!("../../../schemas/log_record.json");
/// `schemas/dead_letter.json`, built into the binary.
pub const DEAD_LETTER_JSON: &str = include_str!("../../../schemas/dead_letter.json");

/// Name of the curated records table in the warehouse.
pub const LOG_RECORDS_TABLE: &str = "log_records";

/// One field of a BigQuery JSON schema (the format `bq mk --schema` takes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BqField {
    /// Column name.
    pub name: String,
    /// BigQuery type: STRING, BYTES, INTEGER, FLOAT, BOOLEAN, TIMESTAMP, DATE.
    #[serde(rename = "type")]
    pub field_type: String,
    /// NULLABLE (default) or REQUIRED.
    #[serde(default = "nullable", skip_serializing_if = "is_nullable")]
    pub mode: String,
    /// Column description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

fn nullable() -> String {
    "NULLABLE".into()
}

fn is_nullable(m: &String) -> bool {
    m == "NULLABLE"
}

/// Parses a BigQuery JSON schema document.
pub fn parse_bq_schema(json: &str) -> Result<Vec<BqField>> {
    serde_json::from_str(json).map_err(|e| Error::invalid("BigQuery schema", e.to_string()))
}

/// Derives the Arrow schema of a BigQuery schema. Timestamps are microseconds
/// in UTC, which Parquet stores as `TIMESTAMP_MICROS` adjusted to UTC and
/// BigQuery loads into `TIMESTAMP` columns.
pub fn bq_to_arrow(fields: &[BqField]) -> Result<Schema> {
    let mut out = Vec::with_capacity(fields.len());
    for f in fields {
        let dt = match f.field_type.as_str() {
            "STRING" | "JSON" => DataType::Utf8,
            "BYTES" => DataType::Binary,
            "INTEGER" | "INT64" => DataType::Int64,
            "FLOAT" | "FLOAT64" => DataType::Float64,
            "BOOLEAN" | "BOOL" => DataType::Boolean,
            "TIMESTAMP" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            "DATE" => DataType::Date32,
            other => {
                return Err(Error::invalid(
                    "BigQuery schema",
                    format!("field {}: type {other} is not supported", f.name),
                ));
            }
        };
        let nullable = match f.mode.as_str() {
            "NULLABLE" => true,
            "REQUIRED" => false,
            other => {
                return Err(Error::invalid(
                    "BigQuery schema",
                    format!("field {}: mode {other} is not supported", f.name),
                ));
            }
        };
        out.push(Field::new(&f.name, dt, nullable));
    }
    Ok(Schema::new(out))
}

/// Derives a BigQuery schema from an Arrow schema (for tables whose shape is
/// defined by SQL, such as rollups).
pub fn arrow_to_bq(schema: &Schema) -> Result<Vec<BqField>> {
    schema
        .fields()
        .iter()
        .map(|f| {
            let t = match f.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "STRING",
                DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BYTES",
                DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32 => "INTEGER",
                DataType::Float32 | DataType::Float64 => "FLOAT",
                DataType::Boolean => "BOOLEAN",
                DataType::Timestamp(_, Some(_)) => "TIMESTAMP",
                DataType::Date32 => "DATE",
                other => {
                    return Err(Error::invalid(
                        "schema",
                        format!("column {}: {other} has no BigQuery type here", f.name()),
                    ));
                }
            };
            Ok(BqField {
                name: f.name().clone(),
                field_type: t.into(),
                mode: if f.is_nullable() {
                    "NULLABLE".into()
                } else {
                    "REQUIRED".into()
                },
                description: String::new(),
            })
        })
        .collect()
}

fn embedded(cell: &'static OnceLock<SchemaRef>, json: &str) -> SchemaRef {
    cell.get_or_init(|| {
        let fields = parse_bq_schema(json).expect("built-in schema parses (tested)");
        Arc::new(bq_to_arrow(&fields).expect("built-in schema maps to Arrow (tested)"))
    })
    .clone()
}

/// Arrow schema of landing and curated records (`schemas/log_record.json`).
pub fn log_record_schema() -> SchemaRef {
    static CELL: OnceLock<SchemaRef> = OnceLock::new();
    embedded(&CELL, LOG_RECORD_JSON)
}

/// Arrow schema of dead-letter entries (`schemas/dead_letter.json`).
pub fn dead_letter_schema() -> SchemaRef {
    static CELL: OnceLock<SchemaRef> = OnceLock::new();
    embedded(&CELL, DEAD_LETTER_JSON)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts() -> DataType {
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    }

    #[test]
    fn log_record_mapping() {
        let s = log_record_schema();
        let expect = [
            ("event_id", DataType::Utf8, false),
            ("tenant_id", DataType::Utf8, false),
            ("timestamp", ts(), false),
            ("ingest_time", ts(), false),
            ("level", DataType::Utf8, false),
            ("service", DataType::Utf8, false),
            ("message", DataType::Utf8, false),
            ("request_id", DataType::Utf8, true),
            ("trace_id", DataType::Utf8, true),
            ("source", DataType::Utf8, false),
            ("source_account", DataType::Utf8, true),
            ("attributes", DataType::Utf8, true),
        ];
        assert_eq!(s.fields().len(), expect.len());
        for (f, (name, dt, nullable)) in s.fields().iter().zip(expect) {
            assert_eq!(f.name(), name);
            assert_eq!(f.data_type(), &dt, "{name}");
            assert_eq!(f.is_nullable(), nullable, "{name}");
        }
    }

    #[test]
    fn dead_letter_mapping() {
        let s = dead_letter_schema();
        assert_eq!(
            s.field_with_name("raw").unwrap().data_type(),
            &DataType::Binary
        );
        assert_eq!(
            s.field_with_name("raw_bytes").unwrap().data_type(),
            &DataType::Int64
        );
        assert!(!s.field_with_name("reason").unwrap().is_nullable());
        assert!(s.field_with_name("timestamp").unwrap().is_nullable());
    }

    #[test]
    fn round_trip_through_arrow() {
        for json in [LOG_RECORD_JSON, DEAD_LETTER_JSON] {
            let bq = parse_bq_schema(json).unwrap();
            let back = arrow_to_bq(&bq_to_arrow(&bq).unwrap()).unwrap();
            let strip: Vec<_> = bq
                .iter()
                .map(|f| (f.name.clone(), f.field_type.clone(), f.mode.clone()))
                .collect();
            let back: Vec<_> = back
                .iter()
                .map(|f| (f.name.clone(), f.field_type.clone(), f.mode.clone()))
                .collect();
            assert_eq!(strip, back);
        }
    }

    #[test]
    fn unsupported_types_are_errors() {
        let f = parse_bq_schema(r#"[{"name":"r","type":"RECORD"}]"#).unwrap();
        assert!(bq_to_arrow(&f).is_err());
        let f = parse_bq_schema(r#"[{"name":"r","type":"STRING","mode":"REPEATED"}]"#).unwrap();
        assert!(bq_to_arrow(&f).is_err());
    }
}
