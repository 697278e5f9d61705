//! `logferry deploy render`: the CloudFormation passes cfn-lint, the
//! Terraform (JSON syntax) refers only to what it declares, the shards follow
//! the expected rates, the Lambda configuration loads, and every IAM grant
//! is one the code calls (its call site exists) while every policy holds
//! exactly the grants of `deploy::iam`. The other half, that every call the
//! programs make is granted, is checked on the emulators by
//! `forwarder::client_logs_reach_bigquery_through_the_forwarder`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use logferry::deploy::iam::{self, GcpScope, Role};

use crate::common::*;

const CONFIG: &str = r#"
[storage]
lake = "s3://acme-logferry-lake/lake"
export = "gs://acme-logferry-export/curated"
[warehouse]
kind = "bigquery"
[bigquery]
project = "acme-analytics"
dataset = "logs"
[[tenant]]
id = "tenant-a"
streams = ["logs-tenant-a"]
log_groups = ["/tenants/tenant-a/"]
accounts = ["111122223333", "444455556666"]
[[tenant]]
id = "tenant-b"
streams = ["logs-tenant-b", "logs-tenant-b-2"]
log_groups = ["/tenants/tenant-b/"]
accounts = ["777788889999"]
[deploy]
records_per_second = 300
bytes_per_second = 400000
[deploy.tenant_rates]
tenant-a = { records_per_second = 12000, bytes_per_second = 9000000 }
"#;

fn render(dir: &Path, args: &[&str]) -> Value {
    std::fs::write(dir.join("c.toml"), CONFIG).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_logferry"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--config")
        .arg(dir.join("c.toml"))
        .args(["deploy", "render", "--json", "--out"])
        .arg(dir.join("out"))
        .args(args)
        .env_remove("LOGFERRY_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn read(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every `${type.name...}` of a Terraform JSON document names something it
/// declares (a resource, a data source, a variable).
fn references_resolve(doc: &Value) {
    let mut declared = BTreeSet::new();
    for (ty, by) in doc["resource"].as_object().unwrap() {
        for name in by.as_object().unwrap().keys() {
            declared.insert(format!("{ty}.{name}"));
        }
    }
    for (ty, by) in doc["data"].as_object().into_iter().flatten() {
        for name in by.as_object().unwrap().keys() {
            declared.insert(format!("data.{ty}.{name}"));
        }
    }
    for name in doc["variable"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
    {
        declared.insert(format!("var.{name}"));
    }
    let text = doc.to_string();
    let mut rest = text.as_str();
    let mut seen = 0;
    while let Some(i) = rest.find("${") {
        if rest[..i].ends_with('$') {
            rest = &rest[i + 2..];
            continue;
        }
        let expr = &rest[i + 2..];
        let end = expr.find('}').unwrap();
        let parts: Vec<&str> = expr[..end].split('.').collect();
        let key = if parts[0] == "data" {
            parts[..3].join(".")
        } else {
            parts[..2].join(".")
        };
        assert!(
            declared.contains(&key),
            "undeclared {key} in ${{{}}}",
            &expr[..end]
        );
        seen += 1;
        rest = &expr[end..];
    }
    assert!(seen > 0);
    for (_, by) in doc["resource"].as_object().unwrap() {
        for (name, body) in by.as_object().unwrap() {
            for d in body["depends_on"].as_array().into_iter().flatten() {
                assert!(declared.contains(d.as_str().unwrap()), "{name}: {d}");
            }
        }
    }
}

/// A CloudFormation role's actions, from its inline policies.
fn cfn_role_actions(t: &Value, role: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for p in t["Resources"][role]["Properties"]["Policies"]
        .as_array()
        .unwrap()
    {
        for s in p["PolicyDocument"]["Statement"].as_array().unwrap() {
            for a in s["Action"].as_array().unwrap() {
                out.insert(a.as_str().unwrap().to_string());
            }
        }
    }
    out
}

fn granted(role: Role) -> BTreeSet<String> {
    iam::grants(role)
        .into_iter()
        .flat_map(|(_, a)| a)
        .map(str::to_string)
        .collect()
}

fn tool(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

#[test]
fn cloudformation_passes_cfn_lint_and_holds_exactly_the_grants() {
    let dir = tempfile::tempdir().unwrap();
    let r = render(
        dir.path(),
        &["--aws", "cloudformation", "--gcp", "terraform"],
    );
    // Shards: tenant-a at 12,000 records/s and 9 MB/s needs 12 shards,
    // twice that with the default headroom; tenant-b's 300 records/s are
    // split over its two streams.
    let shards: BTreeMap<String, u64> = r["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["shards"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(shards["logs-tenant-a"], 24, "{r:#}");
    assert_eq!(shards["logs-tenant-b"], 1);
    let out = dir.path().join("out");
    let central = read(&out.join("aws/central.cfn.json"));
    let res = central["Resources"].as_object().unwrap();
    assert_eq!(res["StreamLogsTenantA"]["Properties"]["ShardCount"], 24);
    // The lake: encrypted, no public access, multipart uploads aborted,
    // landing and dead letters expiring.
    let lake = &res["LakeBucket"]["Properties"];
    assert_eq!(
        lake["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"],
        true
    );
    let rules = lake["LifecycleConfiguration"]["Rules"].to_string();
    for want in [
        "AbortIncompleteMultipartUpload",
        "lake/landing/",
        "lake/dlq/",
    ] {
        assert!(rules.contains(want), "{want}: {rules}");
    }
    // One writer role per tenant, trusting its accounts with its id as the
    // external id, writing its own streams only.
    let writer = &res["TenantWriterTenantB"]["Properties"];
    let trust = writer["AssumeRolePolicyDocument"].to_string();
    assert!(
        trust.contains("777788889999") && !trust.contains("111122223333"),
        "{trust}"
    );
    assert!(trust.contains("\"sts:ExternalId\":\"tenant-b\""), "{trust}");
    let own = writer["Policies"][0]["PolicyDocument"].to_string();
    assert!(
        own.contains("StreamLogsTenantB") && !own.contains("StreamLogsTenantA"),
        "{own}"
    );
    assert!(
        res["LogsDestinationTenantA"]["Properties"]["DestinationPolicy"]
            .to_string()
            .contains("444455556666")
    );
    // Every schedule of the configuration invokes the runner.
    let schedules = res
        .values()
        .filter(|v| v["Type"] == "AWS::Scheduler::Schedule")
        .count();
    assert_eq!(schedules, 3, "the default [[schedule]] entries");
    assert!(res.values().any(|v| v["Type"] == "AWS::CloudWatch::Alarm"));
    // Each role holds the grants of deploy::iam, no more, no fewer.
    for (role, id) in [
        (Role::Lander, "LanderRole"),
        (Role::Runner, "RunnerRole"),
        (Role::LogsDestination, "LogsDestinationRole"),
        (Role::Scheduler, "SchedulerRole"),
        (Role::TenantWriter, "TenantWriterTenantA"),
    ] {
        assert_eq!(cfn_role_actions(&central, id), granted(role), "{id}");
    }
    let client = read(&out.join("aws/client-tenant-a.cfn.json"));
    assert_eq!(
        cfn_role_actions(&client, "ForwarderRole"),
        granted(Role::ClientForwarder)
    );
    let env = &client["Resources"]["ForwarderFunction"]["Properties"]["Environment"]["Variables"];
    assert_eq!(env["LOGFERRY_FORWARDER_EXTERNAL_ID"], "tenant-a");
    assert!(
        env["LOGFERRY_FORWARDER_STREAM"]
            .to_string()
            .contains("logs-tenant-a")
    );
    // GCP: the custom roles hold exactly the exporter's permissions.
    let gcp = read(&out.join("gcp/main.tf.json"));
    references_resolve(&gcp);
    for (key, scope) in [
        ("exporter_bucket", GcpScope::Bucket),
        ("exporter_dataset", GcpScope::Dataset),
        ("exporter_project", GcpScope::Project),
    ] {
        let got: Vec<&str> = gcp["resource"]["google_project_iam_custom_role"][key]["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert_eq!(got, iam::gcp_permissions(scope), "{key}");
    }
    let tables = gcp["resource"]["google_bigquery_table"]
        .as_object()
        .unwrap();
    let records = &tables["log_records"];
    assert_eq!(records["time_partitioning"]["field"], "timestamp");
    assert_eq!(
        records["clustering"],
        serde_json::json!(["tenant_id", "service"])
    );
    assert!(
        records["time_partitioning"]["expiration_ms"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(tables.len(), 3, "log_records and the two rollups");
    // The configuration the zips carry loads, with the same tenants.
    let toml = out.join("lambda/logferry.toml");
    let (c, _) = logferry_core::config::Config::load(Some(&toml), Vec::new()).unwrap();
    let s = c.validate(dir.path()).unwrap();
    assert_eq!(s.tenants.all().len(), 2);
    assert_eq!(s.lake_url, "s3://acme-logferry-lake/lake");
    assert_eq!(
        s.tenants
            .by_stream("logs-tenant-b-2")
            .map(|t| t.id.to_string()),
        Some("tenant-b".into())
    );
    // cfn-lint, as installed by scripts/emulators.sh.
    if emulators().is_none() {
        return;
    }
    let lint = tool("LOGFERRY_CFN_LINT").expect("LOGFERRY_CFN_LINT (scripts/emulators.sh)");
    for f in ["central", "client-tenant-a", "client-tenant-b"] {
        let file = out.join(format!("aws/{f}.cfn.json"));
        let o = Command::new(&lint).arg(&file).output().unwrap();
        assert!(
            o.status.success(),
            "cfn-lint {f}:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn terraform_refers_only_to_what_it_declares() {
    let dir = tempfile::tempdir().unwrap();
    render(dir.path(), &["--aws", "terraform", "--gcp", "terraform"]);
    let out = dir.path().join("out");
    let central = read(&out.join("aws/central/main.tf.json"));
    references_resolve(&central);
    let res = &central["resource"];
    assert_eq!(
        res["aws_kinesis_stream"]["logs_tenant_a"]["shard_count"],
        24
    );
    let policy = |ty: &str, name: &str| -> BTreeSet<String> {
        let doc: Value = serde_json::from_str(res[ty][name]["policy"].as_str().unwrap()).unwrap();
        doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["Action"].as_array().unwrap().clone())
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        policy("aws_iam_role_policy", "lander"),
        granted(Role::Lander)
    );
    assert_eq!(
        policy("aws_iam_role_policy", "runner"),
        granted(Role::Runner)
    );
    assert_eq!(
        policy("aws_iam_role_policy", "writer_tenant_b"),
        granted(Role::TenantWriter)
    );
    for t in ["tenant-a", "tenant-b"] {
        let client = read(&out.join(format!("aws/client-{t}/main.tf.json")));
        references_resolve(&client);
        let doc: Value = serde_json::from_str(
            client["resource"]["aws_iam_role_policy"]["forwarder"]["policy"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        let actions: BTreeSet<String> = doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["Action"].as_array().unwrap().clone())
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        assert_eq!(actions, granted(Role::ClientForwarder));
    }
    references_resolve(&read(&out.join("gcp/main.tf.json")));
    // `terraform validate` needs the providers, which `terraform init`
    // downloads from the registry: where that works, it runs.
    if let Ok(tf) = which("terraform") {
        for d in ["aws/central", "gcp"] {
            let dir = out.join(d);
            let init = Command::new(&tf)
                .arg(format!("-chdir={}", dir.display()))
                .args(["init", "-backend=false", "-input=false"])
                .output()
                .unwrap();
            if !init.status.success() {
                eprintln!(
                    "terraform validate not run for {d}: terraform init could not install the providers"
                );
                continue;
            }
            let v = Command::new(&tf)
                .arg(format!("-chdir={}", dir.display()))
                .args(["validate", "-no-color"])
                .output()
                .unwrap();
            assert!(
                v.status.success(),
                "terraform validate {d}: {}",
                String::from_utf8_lossy(&v.stdout)
            );
        }
    }
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}

/// Each AWS and Google call the grants name is made where they say.
#[test]
fn every_grant_names_a_call_the_code_makes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let code = |file: &str| std::fs::read_to_string(root.join(file)).unwrap();
    for c in iam::CALLS {
        let (file, needle) = c.site;
        assert!(
            code(file).contains(needle),
            "{} is granted for {needle:?} in {file}, which is not there",
            c.action
        );
    }
    for c in iam::GCP_CALLS {
        let (file, needle) = c.site;
        assert!(
            code(file).contains(needle),
            "{}: {needle:?} in {file}",
            c.method
        );
    }
    // And the code's Kinesis calls are all listed (loadtest's aside: an
    // operator's tool, not a role's).
    for file in [
        "jobs/forward/src/kinesis.rs",
        "lambdas/src/forwarder.rs",
        "lambdas/src/lander.rs",
    ] {
        let text = code(file);
        let text = text.split("#[cfg(test)]").next().unwrap();
        for op in [
            "put_records",
            "put_record",
            "get_records",
            "get_shard_iterator",
            "list_shards",
            "describe_stream",
            "describe_stream_summary",
            "list_streams",
            "create_stream",
        ] {
            if text.contains(&format!(".{op}()")) {
                let action = format!(
                    "kinesis:{}",
                    op.split('_')
                        .map(|w| {
                            let mut c = w.chars();
                            c.next()
                                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                                .unwrap_or_default()
                        })
                        .collect::<String>()
                );
                assert!(
                    iam::CALLS
                        .iter()
                        .any(|c| c.action == action && c.site.0 == file),
                    "{file} calls {op} but no grant names it"
                );
            }
        }
    }
}

/// The container's health check and the systemd unit: the Dockerfile's
/// HEALTHCHECK command passes against the daemon started as its CMD starts
/// it; its user is not root; `systemd-analyze verify` accepts the unit.
/// (No Docker engine runs here: the image itself is not built.)
#[test]
fn the_container_health_check_and_the_systemd_unit_work() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let user = dockerfile
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .unwrap();
    assert!(!user.contains("root") && !user.contains(" 0"), "{user}");
    let health = dockerfile
        .split("HEALTHCHECK")
        .nth(1)
        .and_then(|h| h.split("CMD ").nth(1))
        .and_then(|c| c.lines().next())
        .unwrap()
        .trim()
        .to_string();
    assert!(health.contains("/healthz"), "{health}");
    assert!(dockerfile.contains("CMD [\"daemon\", \"--listen\", \"0.0.0.0:9464\"]"));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_logferry"))
        .args(["daemon", "--listen", &format!("127.0.0.1:{port}")])
        .env("LOGFERRY_DATA_DIR", dir.path())
        .env_remove("LOGFERRY_CONFIG")
        .env("LOGFERRY_LOG", "warn")
        .spawn()
        .unwrap();
    let check = health.replace("9464", &port.to_string());
    let mut ok = false;
    for _ in 0..100 {
        let s = Command::new("sh")
            .args(["-c", &check])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        if s.success() {
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(ok, "{check} never passed");
    // The unit, its ExecStart pointed at the binary just built.
    let unit = std::fs::read_to_string(root.join("deploy/systemd/logferry.service"))
        .unwrap()
        .replace("/usr/local/bin/logferry", env!("CARGO_BIN_EXE_logferry"));
    let path = dir.path().join("logferry.service");
    std::fs::write(&path, unit).unwrap();
    let Ok(analyze) = which("systemd-analyze") else {
        eprintln!("systemd-analyze is not installed: the unit was not verified");
        return;
    };
    let v = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        v.status.success() && v.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&v.stderr)
    );
}
