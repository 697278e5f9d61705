//! `logferry verify isolation` finds rows out of place: an object moved into
//! another tenant's partition, and sources that the configuration gives to
//! another tenant, in the lake and in the warehouse (BigQuery too).

use crate::common::*;
use crate::procs::*;

fn verify(env: &Env) -> (bool, String) {
    let out = logferry(env, &strings(&["verify", "isolation"]))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

fn isolation_is_verified(backend: Backend) {
    let Some(env) = Env::on(backend, "") else {
        return;
    };
    let inputs = tempfile::tempdir().unwrap();
    let w = workload(inputs.path());
    for s in forward_steps(&w) {
        step_ok(&env, &s);
    }
    step_ok(&env, &strings(&["run"]));
    assert_isolated(&env);

    // The streams of tenant-0000 and tenant-0001 swapped in the config:
    // every row of theirs now comes from the other's source.
    let text = std::fs::read_to_string(&env.config).unwrap();
    let swapped = text
        .replace("logs-tenant-0000", "@@")
        .replace("logs-tenant-0001", "logs-tenant-0000")
        .replace("@@", "logs-tenant-0001");
    std::fs::write(&env.config, swapped).unwrap();
    let (ok, out) = verify(&env);
    assert!(!ok, "{out}");
    for area in ["landing", "curated", "warehouse"] {
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(area)
                && l.contains(
                    "row of tenant-0000 from source \"logs-tenant-0000\", which is tenant-0001's"
                )),
            "no {area} violation:\n{out}"
        );
    }
    if backend == Backend::Emulators {
        assert!(out.contains("warehouse bigquery:"), "{out}");
    }
    std::fs::write(&env.config, text).unwrap();
    assert_isolated(&env);
}

#[test]
fn verify_isolation_finds_foreign_sources() {
    isolation_is_verified(Backend::Embedded);
}

#[test]
fn verify_isolation_finds_foreign_sources_on_emulators() {
    isolation_is_verified(Backend::Emulators);
}

/// A landing object copied into another tenant's partition is found, by
/// its path.
#[test]
fn verify_isolation_finds_a_moved_object() {
    let env = Env::new("");
    let inputs = tempfile::tempdir().unwrap();
    let w = workload(inputs.path());
    step_ok(&env, &forward_steps(&w)[0]);
    let landing = env.data_dir().join("lake/landing");
    let from = parquet_files(&landing.join("tenant=tenant-0000"))
        .into_iter()
        .next()
        .unwrap();
    let rel = from
        .strip_prefix(landing.join("tenant=tenant-0000"))
        .unwrap();
    let to = landing.join("tenant=tenant-0001").join(rel);
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(&from, &to).unwrap();
    let (ok, out) = verify(&env);
    assert!(!ok);
    let line = out
        .lines()
        .find(|l| l.contains("in tenant-0001's partition"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains(&format!("tenant=tenant-0001/{}", rel.display())),
        "{line}"
    );
    std::fs::remove_file(&to).unwrap();
    assert_isolated(&env);
}
