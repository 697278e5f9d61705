//! Schedules: one source of truth in `[[schedule]]`, exported for
//! EventBridge Scheduler (the definitions' Lambda input fed to the real
//! handler; the CloudFormation template checked by cfn-lint; Terraform
//! parsed by python-hcl2), crontab and systemd (the timers' calendar
//! checked against the schedules' own next fire times by systemd-analyze).

use std::process::Command;

use crate::common::*;
use crate::procs::*;

const SCHEDULES: &str = "[[schedule]]\nname = \"micro-batch\"\njob = \"run\"\nexpression = \"rate(5 minutes)\"\n\n\
    [[schedule]]\nname = \"nightly\"\njob = \"seal\"\nexpression = \"cron(30 2 ? * MON-FRI *)\"\ntimezone = \"Europe/Berlin\"\n\n\
    [[schedule]]\nname = \"backfills\"\njob = \"backfill\"\nexpression = \"rate(1 hour)\"\n";

/// A tool the test suite installs (scripts/emulators.sh, target/emulators.env).
fn tool(var: &str) -> Option<String> {
    if std::env::var("LOGFERRY_SKIP_EMULATOR_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED: needs {var} (LOGFERRY_SKIP_EMULATOR_TESTS=1)");
        return None;
    }
    Some(std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: scripts/emulators.sh start installs it (scripts/test.sh does)")
    }))
}

#[test]
fn schedule_show_lists_the_next_fire_times() {
    let env = Env::new(SCHEDULES);
    let out = step_ok(
        &env,
        &strings(&["schedule", "show", "--count", "4", "--json"]),
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let all = v.as_array().unwrap();
    assert_eq!(all.len(), 3);
    let nightly = all.iter().find(|s| s["name"] == "nightly").unwrap();
    assert_eq!(nightly["timezone"], "Europe/Berlin");
    let next: Vec<chrono::DateTime<chrono::Utc>> = nightly["next"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(next.len(), 4);
    for t in &next {
        let berlin = t.with_timezone(&chrono_tz::Europe::Berlin);
        assert_eq!(berlin.format("%H:%M").to_string(), "02:30", "{t}");
        use chrono::Datelike;
        assert!(berlin.weekday().number_from_monday() <= 5, "{t}");
    }
    // What EventBridge cannot express is refused by its exports, clearly.
    let fast = Env::new(
        "[[schedule]]\nname = \"fast\"\njob = \"run\"\nexpression = \"rate(10 seconds)\"\n",
    );
    let out = logferry(
        &fast,
        &strings(&["schedule", "export", "--format", "eventbridge"]),
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rate(10 seconds) has no EventBridge equivalent"),
        "{err}"
    );
    // A bad expression stops every command with its reason.
    let bad =
        Env::new("[[schedule]]\nname = \"x\"\njob = \"run\"\nexpression = \"cron(0 2 * * * *)\"\n");
    let out = logferry(&bad, &strings(&["status"])).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("exactly one of day-of-month and day-of-week")
    );
}

/// The exported EventBridge Scheduler definitions carry the input the real
/// Lambda handler takes: fed to it, each runs its schedule's job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_lambda_inputs_run_their_jobs_in_the_handler() {
    let env = Env::new(SCHEDULES);
    let w = env.generate(&Env::spec(500, 3), "in");
    env.forward_both(&w).await;
    let out = step_ok(
        &env,
        &strings(&[
            "schedule",
            "export",
            "--format",
            "eventbridge",
            "--target-arn",
            "arn:aws:lambda:eu-west-1:123456789012:function:logferry",
        ]),
    );
    let defs: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ctx = env.ctx().await;
    let mut ran = Vec::new();
    for d in defs.as_array().unwrap() {
        assert_eq!(
            d["Target"]["Arn"],
            "arn:aws:lambda:eu-west-1:123456789012:function:logferry"
        );
        assert!(d["Target"]["DeadLetterConfig"]["Arn"].is_string());
        assert!(d["Target"]["RetryPolicy"]["MaximumRetryAttempts"].is_number());
        let input: serde_json::Value =
            serde_json::from_str(d["Target"]["Input"].as_str().unwrap()).unwrap();
        let body = logferry::lambda::handle(&ctx, input).await.unwrap();
        ran.push((d["Name"].as_str().unwrap().to_string(), body));
    }
    let micro = &ran
        .iter()
        .find(|(n, _)| n == "logferry-micro-batch")
        .unwrap()
        .1;
    assert_eq!(micro["job"], "run");
    assert!(micro["worked"].as_u64().unwrap() > 0, "{micro}");
    let nightly = &ran.iter().find(|(n, _)| n == "logferry-nightly").unwrap().1;
    assert_eq!(nightly["job"], "seal");
    // The open windows got increments, the others loaded whole: balanced.
    assert!(env.reconcile().await.balanced);
}

#[test]
fn cloudformation_and_terraform_exports_are_valid() {
    let (Some(cfn_lint), Some(python)) = (tool("LOGFERRY_CFN_LINT"), tool("LOGFERRY_TOOLS_PYTHON"))
    else {
        return;
    };
    let env = Env::new(SCHEDULES);
    for target in ["lambda", "ecs"] {
        let tpl = step_ok(
            &env,
            &strings(&[
                "schedule",
                "export",
                "--format",
                "cloudformation",
                "--target",
                target,
            ]),
        );
        let v: serde_json::Value = serde_json::from_str(&tpl).unwrap();
        assert_eq!(v["Resources"].as_object().unwrap().len(), 3);
        assert_eq!(
            v["Resources"]["ScheduleNightly"]["Properties"]["ScheduleExpression"],
            "cron(30 2 ? * MON-FRI *)"
        );
        let file = env.data_dir().join(format!("schedules-{target}.json"));
        std::fs::write(&file, &tpl).unwrap();
        let lint = Command::new(&cfn_lint).arg(&file).output().unwrap();
        assert!(
            lint.status.success(),
            "cfn-lint ({target}):\n{}{}",
            String::from_utf8_lossy(&lint.stdout),
            String::from_utf8_lossy(&lint.stderr)
        );
    }
    let tf = step_ok(
        &env,
        &strings(&["schedule", "export", "--format", "terraform"]),
    );
    let file = env.data_dir().join("schedules.tf");
    std::fs::write(&file, &tf).unwrap();
    let parsed = Command::new(&python)
        .arg("-c")
        .arg(
            "import hcl2, json, sys; d = hcl2.load(open(sys.argv[1])); \
             print(json.dumps(sorted(k.strip('\"') for r in d['resource'] for t in r.values() for k in t)))",
        )
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let names: Vec<String> = serde_json::from_slice(&parsed.stdout).unwrap();
    assert_eq!(names, ["backfills", "micro_batch", "nightly"]);
}

/// systemd timers fire when the schedules do: systemd-analyze computes the
/// next elapses of each exported OnCalendar=, and they are the schedule's
/// own next fire times.
#[test]
fn systemd_timers_and_crontab_say_what_the_schedules_say() {
    let env = Env::new(SCHEDULES);
    let dir = env.data_dir().join("units");
    step_ok(
        &env,
        &strings(&[
            "schedule",
            "export",
            "--format",
            "systemd",
            "--out",
            dir.to_str().unwrap(),
        ]),
    );
    let timer = std::fs::read_to_string(dir.join("logferry-nightly.timer")).unwrap();
    let calendar = timer
        .lines()
        .find_map(|l| l.strip_prefix("OnCalendar="))
        .unwrap();
    let analyze = Command::new("systemd-analyze")
        .args(["calendar", "--iterations=3", calendar])
        .output()
        .expect("systemd-analyze (Debian systemd) checks the exported timers");
    assert!(
        analyze.status.success(),
        "{}",
        String::from_utf8_lossy(&analyze.stderr)
    );
    let text = String::from_utf8_lossy(&analyze.stdout);
    let elapses: Vec<String> = text
        .lines()
        .filter_map(|l| {
            l.split_once("lapse:")
                .or_else(|| l.split_once("Iter. #").and_then(|(_, r)| r.split_once(':')))
                .map(|(_, t)| t.trim().to_string())
        })
        .collect();
    let show = step_ok(
        &env,
        &strings(&["schedule", "show", "--count", "3", "--json"]),
    );
    let v: serde_json::Value = serde_json::from_str(&show).unwrap();
    let nightly = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "nightly")
        .unwrap();
    let ours: Vec<String> = nightly["next"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let t: chrono::DateTime<chrono::Utc> = t.as_str().unwrap().parse().unwrap();
            t.format("%a %Y-%m-%d %H:%M:%S UTC").to_string()
        })
        .collect();
    assert_eq!(elapses, ours, "{text}");
    let service = std::fs::read_to_string(dir.join("logferry-micro-batch.service")).unwrap();
    assert!(
        service.contains("ExecStart=/usr/local/bin/logferry job micro-batch"),
        "{service}"
    );
    let rate = std::fs::read_to_string(dir.join("logferry-micro-batch.timer")).unwrap();
    assert!(rate.contains("OnUnitActiveSec=300s"), "{rate}");

    let cron = step_ok(
        &env,
        &strings(&["schedule", "export", "--format", "crontab"]),
    );
    assert!(
        cron.contains("CRON_TZ=UTC\n*/5 * * * * /usr/local/bin/logferry job micro-batch"),
        "{cron}"
    );
    assert!(
        cron.contains(
            "CRON_TZ=Europe/Berlin\n30 2 * * MON-FRI /usr/local/bin/logferry job nightly"
        ),
        "{cron}"
    );
    assert!(
        cron.contains("0 * * * * /usr/local/bin/logferry job backfills"),
        "{cron}"
    );
}
