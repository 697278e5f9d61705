//! The `logferry` binary: a thin shell over the `logferry` library. Exit
//! status 0 on success, 1 when work failed (a window, a job, a check), 2
//! for a configuration or usage error.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use logferry::cli::{self, Cli, Command, DlqCommand, InputFormat, ScheduleCommand, print};
use logferry::context::Ctx;
use logferry::error::{Error, ErrorKind, Result};
use logferry::{backfill, demo, dlq, forward, measure, pipeline, reconcile, sql, status};
use logferry_core::partition::Window;

/// Logs go to stderr at `warn` (a service, the daemon: `info`), `-v`
/// `info`, `-vv` `debug`, `-q` `error`; `LOGFERRY_LOG` takes a filter.
fn init_logging(g: &cli::Global, service: bool) {
    let default = match (g.quiet, g.verbose) {
        (true, _) => "error",
        (false, 0) if service => "info",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOGFERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

fn window(arg: &Option<String>) -> Result<Option<Window>> {
    Ok(match arg {
        Some(w) => Some(Window::parse(w)?),
        None => None,
    })
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn status_of(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let g = &cli.global;
    let quiet = g.quiet;
    match &cli.command {
        Command::Demo {
            records,
            tenants,
            seed,
            bad_fraction,
            json,
        } => {
            let r = demo::demo(g, *records, *tenants, *seed, *bad_fraction, quiet || *json).await?;
            if *json {
                print_json(&r)?;
            } else {
                print::demo(&r, &g.data_dir);
            }
            Ok(status_of(r.mismatches.is_empty() && r.reconcile.balanced))
        }
        Command::Generate {
            out,
            records,
            tenants,
            seed,
            bad_fraction,
            duplicate_fraction,
            cloudwatch_share,
            span,
        } => {
            let ctx_settings = logferry::context::settings(g)?;
            let span = logferry_core::config::parse_duration("--span", span)?;
            if span + std::time::Duration::from_secs(3600) > ctx_settings.forward.max_age {
                return Err(Error::Config(format!(
                    "--span {span:?}: records that old would be refused as ts_past (forward.max_age is {:?}); \
                     raise forward.max_age to an hour more at least",
                    ctx_settings.forward.max_age
                )));
            }
            let mut spec = logferry_forward::workload::WorkloadSpec::new(
                *records,
                *tenants,
                *seed,
                chrono::Utc::now().timestamp_millis(),
            );
            spec.bad_fraction = *bad_fraction;
            spec.duplicate_fraction = *duplicate_fraction;
            spec.cloudwatch_share = *cloudwatch_share;
            spec.span_ms = span.as_millis() as i64;
            demo::limits_from(&mut spec, &ctx_settings.forward);
            let w = logferry_forward::workload::generate(&spec, out)
                .map_err(|e| Error::io(out.display(), e))?;
            let file = out.join("logferry.toml");
            std::fs::write(&file, logferry_forward::workload::tenants_toml(*tenants))
                .map_err(|e| Error::io(file.display(), e))?;
            if !quiet {
                println!(
                    "wrote {} items ({:.1} MB) to {} and {}, labels to {}, tenants to {}",
                    w.items,
                    w.input_bytes as f64 / 1e6,
                    w.ndjson.display(),
                    w.cloudwatch.display(),
                    w.labels.display(),
                    file.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Forward {
            input,
            inbox,
            format,
            kinesis,
            once,
            json,
        } => {
            let ctx = Ctx::open(g).await?;
            if *kinesis {
                let r = forward::kinesis(&ctx, *once).await?;
                if *json {
                    print_json(&r)?;
                } else if !quiet {
                    print::kinesis(&r);
                }
                return Ok(ExitCode::SUCCESS);
            }
            if *inbox {
                let r = logferry::inbox::forward_once(&ctx).await?;
                if *json {
                    print_json(&r)?;
                } else if !quiet {
                    for f in &r.forwarded {
                        print::forward(f);
                    }
                    println!(
                        "inbox: {} forwarded, {} skipped, {} busy, {} failed, {} not readable whole",
                        r.forwarded.len(),
                        r.skipped,
                        r.busy,
                        r.failed.len(),
                        r.corrupt
                    );
                }
                for (name, e) in &r.failed {
                    eprintln!("FAILED {name}: {e}");
                }
                return Ok(status_of(r.failed.is_empty()));
            }
            let format = match format {
                InputFormat::Ndjson => logferry_forward::Format::Ndjson,
                InputFormat::Cloudwatch => logferry_forward::Format::Cloudwatch,
            };
            let input = input.as_deref().unwrap_or("-");
            let r = forward::forward(&ctx, input, format, quiet || *json).await?;
            if *json {
                print_json(&r)?;
            } else if !quiet {
                print::forward(&r);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            window: w,
            micro_batch,
            retry_failed,
            seal,
            wait,
            json,
        } => {
            let ctx = Ctx::open(g).await?;
            let opts = pipeline::RunOptions {
                mode: if *micro_batch {
                    pipeline::Mode::MicroBatch
                } else {
                    pipeline::Mode::Full
                },
                window: window(w)?,
                seal: *seal,
                quiet: quiet || *json,
                wait: *wait,
                retry_failed: *retry_failed,
            };
            let r = pipeline::run(&ctx, opts).await?;
            if *json {
                print_json(&r)?;
            } else if !quiet {
                print::run(&r);
            }
            Ok(status_of(!r.failed()))
        }
        Command::Sql { query, format } => {
            let ctx = Ctx::open(g).await?;
            sql::ensure_read_only(query)?;
            let (s, _) = sql::session_on(&ctx, &ctx.settings.cluster, None, Some(query)).await?;
            let (schema, batches) = sql::query_with_schema(&s, query).await?;
            let stdout = std::io::stdout();
            sql::write(&schema, &batches, *format, &mut stdout.lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Reconcile { window: w, json } => {
            let ctx = Ctx::open(g).await?;
            let r = reconcile::reconcile(&ctx, window(w)?).await?;
            if *json {
                print_json(&r)?;
            } else {
                print::reconcile(&r);
            }
            Ok(status_of(r.balanced))
        }
        Command::Debug {
            command: cli::DebugCommand::KillPoints,
        } => {
            for (name, what) in logferry_core::failpoint::POINTS {
                if g.verbose > 0 {
                    println!("{name}\t{what}");
                } else {
                    println!("{name}");
                }
            }
            if !logferry_core::failpoint::ENABLED && g.verbose > 0 {
                eprintln!("(this build has no crash points: build with --features failpoints)");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Debug {
            command:
                cli::DebugCommand::LambdaInvoke {
                    bootstrap,
                    events,
                    env,
                    runs,
                    timeout,
                    json,
                },
        } => {
            let r = logferry::lambda::invoke_local(bootstrap, events, env, *runs, *timeout).await?;
            if *json {
                print_json(&r)?;
            } else {
                print::lambda_invoke(&r);
            }
            Ok(status_of(r.ok()))
        }
        Command::Deploy {
            command:
                cli::DeployCommand::Render {
                    aws,
                    gcp,
                    out,
                    json,
                },
        } => {
            let settings = logferry::context::settings(g)?;
            let r = logferry::deploy::render(settings, *aws, *gcp, out)?;
            if *json {
                print_json(&r)?;
            } else {
                print::deploy(&r, out);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            command: cli::VerifyCommand::Isolation { window: w, json },
        } => {
            let ctx = Ctx::open(g).await?;
            let r = logferry::verify::isolation(&ctx, window(w)?).await?;
            if *json {
                print_json(&r)?;
            } else {
                print::isolation(&r);
            }
            Ok(status_of(r.isolated()))
        }
        Command::Status { json } => {
            let ctx = Ctx::open(g).await?;
            let r = status::status(&ctx).await?;
            if *json {
                print_json(&r)?;
            } else {
                print::status(&r);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Daemon { listen } => {
            let ctx = Ctx::open(g).await?;
            let listen = listen.unwrap_or(ctx.settings.daemon.listen);
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let r = logferry::daemon::run(
                ctx,
                logferry::daemon::DaemonOptions {
                    listen,
                    metrics: None,
                },
                stop,
                true,
            )
            .await?;
            if !quiet {
                eprintln!(
                    "logferry daemon: stopped after {} s{}",
                    r.uptime_s,
                    if r.abandoned {
                        format!(
                            "; work still running at the deadline was abandoned, {} lease(s) handed back",
                            r.leases_handed_back
                        )
                    } else {
                        String::new()
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Job { name, json } => {
            let ctx = Ctx::open(g).await?;
            let p = pipeline::Pipeline::new(&ctx)?;
            let r = logferry::jobs::run_schedule(&p, name, quiet || *json).await?;
            if *json {
                print_json(&r)?;
            } else if !quiet {
                if let Some(run) = &r.run {
                    print::run(run);
                }
                for b in &r.backfills {
                    print::backfill(b);
                }
            }
            Ok(status_of(!r.failed()))
        }
        Command::Schedule { command } => {
            let settings = logferry::context::settings(g)?;
            match command {
                ScheduleCommand::Show { count, json } => {
                    let shown =
                        logferry::schedule::show(&settings.schedules, chrono::Utc::now(), *count);
                    if *json {
                        print_json(&shown)?;
                    } else {
                        print::schedules(&shown);
                    }
                }
                ScheduleCommand::Export {
                    format,
                    target,
                    target_arn,
                    role_arn,
                    dead_letter_arn,
                    task_definition_arn,
                    command,
                    out,
                } => {
                    let t = logferry::schedule::Targets {
                        target: *target,
                        arn: target_arn.clone(),
                        role_arn: role_arn.clone(),
                        dead_letter_arn: dead_letter_arn.clone(),
                        task_definition_arn: task_definition_arn.clone(),
                        command: command.clone(),
                    };
                    match (format, out) {
                        (logferry::schedule::Format::Systemd, Some(dir)) => {
                            std::fs::create_dir_all(dir)
                                .map_err(|e| Error::io(dir.display(), e))?;
                            for (file, body) in
                                logferry::schedule::systemd(&settings.schedules, &t)?
                            {
                                let p = dir.join(&file);
                                std::fs::write(&p, body).map_err(|e| Error::io(p.display(), e))?;
                                if !quiet {
                                    eprintln!("wrote {}", p.display());
                                }
                            }
                        }
                        _ => print!(
                            "{}",
                            logferry::schedule::export(&settings.schedules, *format, &t)?
                        ),
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan { json } => {
            let ctx = Ctx::open(g).await?;
            let p = pipeline::Pipeline::new(&ctx)?;
            let mut tables = vec![logferry_core::schema::LOG_RECORDS_TABLE.to_string()];
            tables.extend(p.aggregator().rollup_names());
            let plan = logferry::planner::plan(&ctx.settings, &tables, chrono::Utc::now());
            let mut today = std::collections::BTreeMap::new();
            for t in &tables {
                if let Some(left) = ctx.warehouse.as_dyn().jobs_left(t).await? {
                    today.insert(t.clone(), left);
                }
            }
            // What the last day cost, and the latency the load job quota
            // puts a floor under on real BigQuery.
            let m =
                measure::measured(&ctx, chrono::Utc::now() - chrono::Duration::hours(24)).await?;
            let cost = measure::cost(&ctx, &m).await?;
            let projection = logferry::planner::projection(&plan, &cost);
            if *json {
                print_json(&serde_json::json!({
                    "plan": plan,
                    "jobs_left_today": today,
                    "projection": projection,
                }))?;
            } else {
                print::plan(&plan, &today);
                print::projection(&projection);
            }
            Ok(status_of(plan.refusals.is_empty()))
        }
        Command::Kpi { since, json } => {
            let ctx = Ctx::open(g).await?;
            let from = chrono::Utc::now() - measure::parse_since(since)?;
            let m = measure::measured(&ctx, from).await?;
            let cost = measure::cost(&ctx, &m).await?;
            let kpis = logferry_observe::kpi::evaluate(&m.kpi_inputs(&cost), &ctx.settings.kpi);
            if *json {
                print_json(&kpis)?;
            } else {
                print::kpis(since, &kpis);
            }
            let breach = kpis
                .iter()
                .any(|k| k.status == logferry_observe::KpiStatus::Fail);
            Ok(status_of(!breach))
        }
        Command::Cost { since, json } => {
            let ctx = Ctx::open(g).await?;
            let from = chrono::Utc::now() - measure::parse_since(since)?;
            let m = measure::measured(&ctx, from).await?;
            let cost = measure::cost(&ctx, &m).await?;
            if *json {
                print_json(&serde_json::json!({
                    "cost": cost,
                    "prices": ctx.settings.cost.prices,
                }))?;
            } else {
                print::cost(since, &cost);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Report { since, out } => {
            let ctx = Ctx::open(g).await?;
            let from = chrono::Utc::now() - measure::parse_since(since)?;
            let m = measure::measured(&ctx, from).await?;
            let cost = measure::cost(&ctx, &m).await?;
            let kpis = logferry_observe::kpi::evaluate(&m.kpi_inputs(&cost), &ctx.settings.kpi);
            let mut data = m.report_data(&kpis, &cost, &ctx.settings.kpi);
            data.title = format!("logferry: the last {since}");
            let html = logferry_observe::report::render_html(&data);
            std::fs::write(out, html).map_err(|e| Error::io(out.display(), e))?;
            if !quiet {
                eprintln!("wrote {}", out.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Dashboards { what } => {
            let ctx = Ctx::open(g).await?;
            let input = logferry::dashboards::input(&ctx);
            use logferry_observe::dashboards as d;
            let text = if what.catalog {
                print::catalog()
            } else if what.cloudwatch {
                serde_json::to_string_pretty(&d::cloudwatch_dashboard(&input))?
            } else if what.gcp {
                serde_json::to_string_pretty(&d::gcp_dashboard(&input))?
            } else if what.alerts {
                d::prometheus_alerts(&input)
            } else {
                d::cloudwatch_alarms(&input)
            };
            println!("{}", text.trim_end());
            Ok(ExitCode::SUCCESS)
        }
        Command::Loadtest(a) => logferry::loadtest::main(g, a, quiet).await,
        Command::Backfill(a) => {
            let ctx = Ctx::open(g).await?;
            let p = pipeline::Pipeline::new(&ctx)?;
            let mode = match (&a.sql, a.reload) {
                (Some(file), _) => backfill::BackfillMode::Sql {
                    sql: std::fs::read_to_string(file).map_err(|e| Error::io(file.display(), e))?,
                    file: file.display().to_string(),
                    table: a.table.clone().unwrap_or_default(),
                    schema: match &a.schema {
                        Some(f) => Some(
                            std::fs::read_to_string(f).map_err(|e| Error::io(f.display(), e))?,
                        ),
                        None => None,
                    },
                },
                (None, true) => backfill::BackfillMode::Reload,
                (None, false) => backfill::BackfillMode::Recompute,
            };
            let spec = backfill::BackfillSpec {
                from: a.from,
                to: a.to,
                tenants: a.tenants.clone(),
                tables: a.tables.clone(),
                mode,
            };
            if a.queue {
                let id = backfill::enqueue(&p, spec).await?;
                if a.json {
                    print_json(&serde_json::json!({"queued": id}))?;
                } else if !quiet {
                    println!("queued backfill {id}: the daemon's backfill job runs it");
                }
                return Ok(ExitCode::SUCCESS);
            }
            let b = backfill::Backfill::new(&p, spec)?;
            let plan = b.plan().await?;
            if a.plan {
                if a.json {
                    print_json(&plan)?;
                } else {
                    print::backfill_plan(&plan);
                }
                return Ok(ExitCode::SUCCESS);
            }
            if plan.days_needed.is_none() {
                return Err(Error::Config(format!(
                    "backfill {}: the schedules use every load job BigQuery allows a day, none is left \
                     for a backfill (logferry plan shows the budget)",
                    b.id()
                )));
            }
            if let Some(days) = plan.days_needed
                && days > 1
            {
                return Err(Error::Config(format!(
                    "backfill {} needs {} load jobs per table; what the schedules leave of today's quota \
                     ({:?} left) does not hold them: it takes {} days within BigQuery's quota. Queue it \
                     (--queue) for the daemon to spread over those days, or narrow the range",
                    b.id(),
                    plan.jobs_per_table.values().max().copied().unwrap_or(0),
                    plan.jobs_left_today,
                    days
                )));
            }
            let r = b.run(quiet || a.json).await?;
            if a.json {
                print_json(&r)?;
            } else if !quiet {
                print::backfill(&r);
            }
            Ok(status_of(r.complete))
        }
        Command::Cluster { command } => cluster(g, command).await,
        Command::Dlq { command } => {
            let ctx = Ctx::open(g).await?;
            let (f, replay) = match command {
                DlqCommand::Ls(f) => (f, false),
                DlqCommand::Replay(f) => (f, true),
            };
            let filter = dlq::Filter {
                stage: f.stage.clone(),
                reasons: f.reasons.clone(),
                tenant: f.tenant.clone(),
                from: window(&f.from)?,
                to: window(&f.to)?,
            };
            if replay {
                let r = dlq::replay(&ctx, &filter).await?;
                if f.json {
                    print_json(&r)?;
                } else if !quiet {
                    print::replay(&r);
                }
            } else {
                let r = dlq::ls(&ctx, &filter).await?;
                if f.json {
                    print_json(&r)?;
                } else {
                    print::dlq(&r);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    // Both rustls crypto providers are compiled in (the AWS SDK uses
    // aws-lc-rs, reqwest-based clients ring): pick one for the process so
    // that no client has to guess.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    init_logging(
        &cli.global,
        matches!(
            cli.command,
            Command::Daemon { .. } | Command::Cluster { .. }
        ),
    );
    if let Err(e) = logferry_core::failpoint::check_env() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            if e.kind() == ErrorKind::Config {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    };
    // Work abandoned at a shutdown deadline may sit in blocking code: the
    // process does not wait for it (the daemon's exit stays within a second
    // of its deadline).
    runtime.shutdown_timeout(std::time::Duration::from_millis(300));
    let faults = logferry_core::faults::injected();
    if faults > 0 {
        eprintln!("logferry: {faults} storage faults injected (LOGFERRY_FAULT_RATE)");
    }
    code
}

#[cfg(feature = "ballista")]
async fn cluster(g: &cli::Global, command: &cli::ClusterCommand) -> Result<ExitCode> {
    let ctx = Ctx::open(g).await?;
    match command {
        cli::ClusterCommand::Scheduler { bind } => {
            logferry::cluster::run_scheduler(&ctx, *bind).await?
        }
        cli::ClusterCommand::Executor {
            scheduler,
            bind_host,
            external_host,
            port,
            grpc_port,
            slots,
        } => {
            let o = logferry::cluster::ExecutorOptions {
                scheduler: scheduler.clone(),
                bind_host: bind_host.clone(),
                external_host: external_host.clone(),
                port: *port,
                grpc_port: *grpc_port,
                slots: *slots,
            };
            logferry::cluster::run_executor(&ctx, o).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "ballista"))]
async fn cluster(_: &cli::Global, _: &cli::ClusterCommand) -> Result<ExitCode> {
    Err(logferry::cluster::not_built("logferry cluster"))
}
