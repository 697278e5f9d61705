//! The `logferry` binary: runs the forward, aggregate and export jobs, once per
//! invocation (what a scheduler calls), and answers SQL, reconcile and status.

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use logferry::cli::{self, Cli, Command, InputFormat};
use logferry::context::Ctx;
use logferry::{demo, forward, reconcile, run, sql, status};
use logferry_core::partition::Window;

fn init_logging(g: &cli::Global) {
    let default = match (g.quiet, g.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOGFERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
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
                demo::print(&r, &g.data_dir);
            }
            Ok(if r.mismatches.is_empty() && r.reconcile.balanced {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Generate {
            out,
            records,
            tenants,
            seed,
            bad_fraction,
            duplicate_fraction,
            cloudwatch_share,
        } => {
            let ctx_settings = logferry::context::settings(g)?;
            let mut spec = logferry_forward::workload::WorkloadSpec::new(
                *records,
                *tenants,
                *seed,
                chrono::Utc::now().timestamp_millis(),
            );
            spec.bad_fraction = *bad_fraction;
            spec.duplicate_fraction = *duplicate_fraction;
            spec.cloudwatch_share = *cloudwatch_share;
            demo::limits_from(&mut spec, &ctx_settings.forward);
            let w = logferry_forward::workload::generate(&spec, out)?;
            std::fs::write(
                out.join("logferry.toml"),
                logferry_forward::workload::tenants_toml(*tenants),
            )?;
            if !quiet {
                println!(
                    "wrote {} items ({:.1} MB) to {} and {}, labels to {}, tenants to {}",
                    w.items,
                    w.input_bytes as f64 / 1e6,
                    w.ndjson.display(),
                    w.cloudwatch.display(),
                    w.labels.display(),
                    out.join("logferry.toml").display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Forward {
            input,
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
                    forward::print_kinesis(&r);
                }
                return Ok(ExitCode::SUCCESS);
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
                forward::print(&r);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            window: w,
            seal,
            wait,
            json,
        } => {
            let ctx = Ctx::open(g).await?;
            let opts = run::RunOptions {
                window: window(w)?,
                seal: *seal,
                quiet: quiet || *json,
                wait: *wait,
            };
            let r = run::run(&ctx, opts).await?;
            if *json {
                print_json(&r)?;
            } else if !quiet {
                run::print(&r);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Sql { query, format } => {
            let ctx = Ctx::open(g).await?;
            sql::ensure_read_only(query)?;
            let (s, _) = sql::session_for(&ctx, None, Some(query)).await?;
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
                reconcile::print(&r);
            }
            Ok(if r.balanced {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
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
        Command::Verify {
            command: cli::VerifyCommand::Isolation { window: w, json },
        } => {
            let ctx = Ctx::open(g).await?;
            let r = logferry::verify::isolation(&ctx, window(w)?).await?;
            if *json {
                print_json(&r)?;
            } else {
                logferry::verify::print(&r);
            }
            Ok(if r.isolated() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Status { json } => {
            let ctx = Ctx::open(g).await?;
            let r = status::status(&ctx).await?;
            if *json {
                print_json(&r)?;
            } else {
                status::print(&r);
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
    init_logging(&cli.global);
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
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    let faults = logferry_core::faults::injected();
    if faults > 0 {
        eprintln!("logferry: {faults} storage faults injected (LOGFERRY_FAULT_RATE)");
    }
    code
}
