//! The `logferry` binary's contract: commands, exit codes, output formats.

use std::process::{Command, Stdio};

use crate::common::*;
use crate::procs::{logferry, step_ok, strings};

fn bin() -> Command {
    // The emulator environment (scripts/test.sh exports it) must not leak
    // into the embedded CLI tests: each gives its own --config.
    let mut c = Command::new(env!("CARGO_BIN_EXE_logferry"));
    c.env_remove("LOGFERRY_CONFIG");
    c
}

/// `logferry ARGS` with `env`'s config and data dir.
fn on(env: &Env, args: &[&str]) -> Command {
    logferry(env, &strings(args))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn demo_runs_the_whole_pipeline_and_balances() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = run_ok(
        bin()
            .args(["demo", "--records", "3000", "--tenants", "4", "--data-dir"])
            .arg(&data),
    );
    assert!(out.contains("balanced for every tenant"), "{out}");
    assert!(out.contains("every count matches"), "{out}");
    // The demo left a config in the data dir: other commands use it as is.
    let json = run_ok(bin().args(["reconcile", "--json", "--data-dir"]).arg(&data));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["balanced"], true);
    assert!(v["tenants"]["tenant-0000"]["loaded"].as_u64().unwrap() > 0);
    let rows = run_ok(
        bin()
            .args(["sql", "--format", "json", "--data-dir"])
            .arg(&data)
            .arg("SELECT tenant_id, count(*) AS n FROM warehouse GROUP BY tenant_id ORDER BY tenant_id"),
    );
    let v: serde_json::Value = serde_json::from_str(&rows).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 4);
    assert_eq!(v[0]["tenant_id"], "tenant-0000");
    run_ok(bin().args(["verify", "isolation", "--data-dir"]).arg(&data));
    // A second demo in the same directory starts afresh.
    run_ok(
        bin()
            .args(["demo", "--records", "500", "--tenants", "2", "--data-dir"])
            .arg(&data),
    );
    // A directory the demo did not make is left alone.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("keep.txt"), "x").unwrap();
    let out = bin()
        .args(["demo", "--records", "10", "--data-dir"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(other.join("keep.txt").exists());
}

#[test]
fn sql_is_read_only_and_speaks_three_formats() {
    let env = Env::new("");
    let w = env.generate(&Env::spec(500, 5), "in");
    let input = w.ndjson.to_string_lossy();
    run_ok(&mut on(&env, &["forward", "--input", &input]));
    run_ok(&mut on(&env, &["run"]));
    for bad in [
        "DROP TABLE landing",
        "INSERT INTO curated SELECT * FROM landing",
        "COPY (SELECT 1) TO '/tmp/x.csv'",
    ] {
        let out = on(&env, &["sql", bad]).output().unwrap();
        assert!(!out.status.success(), "{bad} was accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("read-only"),
            "{bad}"
        );
    }
    let q = "SELECT count(*) AS n FROM curated";
    let table = run_ok(&mut on(&env, &["sql", q]));
    assert!(table.contains("| n "), "{table}");
    let csv = run_ok(&mut on(&env, &["sql", "--format", "csv", q]));
    assert!(csv.starts_with("n\n"), "{csv}");
    let empty = "SELECT * FROM dlq WHERE false";
    let json = run_ok(&mut on(&env, &["sql", "--format", "json", empty]));
    assert_eq!(json.trim(), "[]");
    for table in [
        "landing",
        "dlq",
        "curated",
        "logs_per_minute",
        "error_rate",
        "warehouse",
        "warehouse_error_rate",
    ] {
        run_ok(&mut on(
            &env,
            &["sql", &format!("SELECT count(*) FROM {table}")],
        ));
    }
}

#[test]
fn reconcile_fails_until_every_window_is_loaded() {
    let env = Env::new("");
    let w = env.generate(&Env::spec(800, 9), "in");
    let reconcile = || on(&env, &["reconcile", "--json"]).output().unwrap();
    // Standard input works as a source too.
    let mut child = on(&env, &["forward", "--input", "-", "--format", "cloudwatch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        &std::fs::read(&w.cloudwatch).unwrap(),
    )
    .unwrap();
    let fwd = child.wait_with_output().unwrap();
    assert!(fwd.status.success());
    assert!(String::from_utf8_lossy(&fwd.stdout).contains("forward stdin (cloudwatch)"));
    let out = reconcile();
    assert!(
        !out.status.success(),
        "reconcile balanced before run: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["balanced"], false);
    run_ok(&mut on(&env, &["run"]));
    let out = reconcile();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let status = run_ok(&mut on(&env, &["status", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|w| w["export"] == "loaded")
    );
    let out = on(&env, &["run", "--window", "2026-01-15T1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("YYYY-MM-DDTHH"));
}

#[test]
fn configuration_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, "{}\n").unwrap();
    let out = bin()
        .arg("forward")
        .arg("--input")
        .arg(&input)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [[tenant]] is configured"));
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[[tenant]]\nid = \"../etc\"\n").unwrap();
    let out = bin()
        .arg("status")
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tenant id"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = bin()
        .arg("status")
        .env("LOGFERRY__FORWARD__MAX_AGE", "14 days")
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("forward.max_age"));
}

/// Peak memory of `forward` depends on the buffer bound, not on the input:
/// four times the input stays within a small margin of the same peak.
#[test]
fn forward_memory_stays_flat_as_input_grows() {
    let env = Env::new("");
    let small = env.generate(&Env::spec(8_000, 21), "small");
    let big = env.generate(&Env::spec(32_000, 22), "big");
    let peak = |path: &std::path::Path| -> u64 {
        let mut child = on(&env, &["forward", "--input", &path.to_string_lossy()])
            .env("LOGFERRY__FORWARD__MAX_BUFFERED_BYTES", "2000000")
            .env("LOGFERRY__FORWARD__BATCH_MAX_RECORDS", "100000")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        crate::procs::peak_rss_kib(&mut child)
    };
    let (s, b) = (peak(&small.ndjson), peak(&big.ndjson));
    assert!(s > 0 && b > 0);
    assert!(
        (b as f64) < 1.3 * s as f64 + 8192.0,
        "peak RSS grew with the input: {s} KiB for 8k records, {b} KiB for 32k"
    );
}

/// A window of thousands of objects (a daemon's inbox at one object a
/// second) is read with a bounded number of open files: queries over it
/// run under a descriptor limit far below its object count.
#[test]
fn many_objects_are_read_within_a_small_file_limit() {
    let env = Env::new("");
    let w = env.generate(&Env::spec(600, 31), "in");
    step_ok(
        &env,
        &strings(&["forward", "--input", &w.ndjson.to_string_lossy()]),
    );
    let count = |limit: Option<u32>| -> (bool, String) {
        let inner = on(
            &env,
            &["sql", "--format", "csv", "SELECT count(*) FROM landing"],
        );
        let mut c = Command::new("sh");
        let script = match limit {
            Some(n) => format!("ulimit -n {n} && exec \"$@\""),
            None => "exec \"$@\"".into(),
        };
        c.arg("-c").arg(script).arg("sh").arg(inner.get_program());
        c.args(inner.get_args());
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        let out = c.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, before) = count(None);
    assert!(ok, "{before}");
    let n0: u64 = before.lines().nth(1).unwrap().trim().parse().unwrap();
    let files = parquet_files(&env.data_dir().join("lake/landing"));
    assert!(!files.is_empty());
    let copies = 1500usize.div_ceil(files.len());
    for f in &files {
        for i in 0..copies {
            let name = format!("copy{i:04}-{}", f.file_name().unwrap().to_string_lossy());
            std::fs::copy(f, f.with_file_name(name)).unwrap();
        }
    }
    let (ok, after) = count(Some(128));
    assert!(
        ok,
        "{} objects under ulimit -n 128: {after}",
        files.len() * (copies + 1)
    );
    let n: u64 = after.lines().nth(1).unwrap().trim().parse().unwrap();
    assert_eq!(n, n0 * (copies as u64 + 1));
}
