//! Golden tests of the SQL program: each `sql/tests/<case>/input.csv` (landing
//! rows) runs through the real engine and every output is compared with the
//! CSV files next to it; rollup schemas are compared with
//! `schemas/rollups/<name>.json`. `LOGFERRY_BLESS=1` rewrites the expected
//! files instead (review the diff).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::datasource::MemTable;

use logferry_core::schema::{arrow_to_bq, log_record_schema, parse_bq_schema};

use crate::engine;
use crate::program::SqlProgram;
use crate::session::new_session;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn bless() -> bool {
    std::env::var("LOGFERRY_BLESS").is_ok_and(|v| v == "1")
}

fn to_csv(batches: &[RecordBatch]) -> String {
    let mut buf = Vec::new();
    {
        let mut w = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut buf);
        for b in batches {
            w.write(b).unwrap();
        }
    }
    String::from_utf8(buf).unwrap()
}

fn check(path: &Path, actual: &str, failures: &mut Vec<String>) {
    if bless() {
        std::fs::write(path, actual).unwrap();
        return;
    }
    match std::fs::read_to_string(path) {
        Ok(expected) if expected == actual => {}
        Ok(expected) => failures.push(format!(
            "{} differs.\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        )),
        Err(_) => failures.push(format!("{} is missing; actual:\n{actual}", path.display())),
    }
}

fn read_input(path: &Path, schema: &SchemaRef) -> Vec<RecordBatch> {
    let f = std::fs::File::open(path).unwrap();
    arrow::csv::ReaderBuilder::new(schema.clone())
        .with_header(true)
        .build(f)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

#[tokio::test]
async fn golden_sql_cases() {
    let program = SqlProgram::builtin().unwrap();
    let cases = root().join("sql/tests");
    let mut failures = Vec::new();
    let mut n = 0;
    for case in std::fs::read_dir(&cases).unwrap() {
        let dir = case.unwrap().path();
        if !dir.join("input.csv").exists() {
            continue;
        }
        n += 1;
        let schema = log_record_schema();
        let input = read_input(&dir.join("input.csv"), &schema);
        let ctx = new_session();
        ctx.register_table(
            "window_input",
            Arc::new(MemTable::try_new(schema.clone(), vec![input]).unwrap()),
        )
        .unwrap();
        let out = engine::run(&ctx, &program).await.unwrap();
        check(
            &dir.join("curated.csv"),
            &to_csv(&out.curated),
            &mut failures,
        );
        let rejected: Vec<RecordBatch> = out
            .rejected
            .iter()
            .map(|b| {
                let s = b.schema();
                let idx: Vec<usize> = ["tenant_id", "event_id", "reason", "detail"]
                    .iter()
                    .map(|c| s.index_of(c).unwrap())
                    .collect();
                b.project(&idx).unwrap()
            })
            .collect();
        check(&dir.join("dlq.csv"), &to_csv(&rejected), &mut failures);
        let mut counts = String::from("tenant_id,input,duplicates,dead_lettered,curated\n");
        for (t, c) in &out.counts {
            counts.push_str(&format!(
                "{t},{},{},{},{}\n",
                c.input, c.duplicates, c.dead_lettered, c.curated
            ));
        }
        check(&dir.join("counts.csv"), &counts, &mut failures);
        for r in &out.rollups {
            check(
                &dir.join(format!("{}.csv", r.name)),
                &to_csv(&r.batches),
                &mut failures,
            );
            let bq = arrow_to_bq(&r.schema).unwrap();
            let path = root().join(format!("schemas/rollups/{}.json", r.name));
            if bless() {
                let text = serde_json::to_string_pretty(&bq).unwrap() + "\n";
                std::fs::write(&path, text).unwrap();
            } else {
                let pinned = std::fs::read_to_string(&path)
                    .map(|t| parse_bq_schema(&t).unwrap())
                    .unwrap_or_default();
                let strip =
                    |v: &[logferry_core::schema::BqField]| -> Vec<(String, String, String)> {
                        v.iter()
                            .map(|f| (f.name.clone(), f.field_type.clone(), f.mode.clone()))
                            .collect()
                    };
                if strip(&pinned) != strip(&bq) {
                    failures.push(format!(
                        "{}: rollup schema changed: {:?}",
                        path.display(),
                        strip(&bq)
                    ));
                }
            }
        }
    }
    assert!(n > 0, "no golden cases found under {}", cases.display());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
