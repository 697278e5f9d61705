//! Ad-hoc queries on a DataFusion Ballista cluster (`[cluster] scheduler`):
//! the client's session, a standalone cluster started in this process, and
//! the `logferry cluster scheduler|executor` processes of a real one.
//!
//! Every part registers the lake's store (and a local warehouse's) under
//! logferry's URL schemes in its runtime, so a plan that names
//! `lf-lake://lake/...` objects reads them wherever it runs: each process is
//! started with the same configuration. Executors run their tasks under the
//! aggregate's memory limit and spill to its spill directory.
//!
//! Ballista needs the `ballista` cargo feature; without it, a configured
//! cluster is a clear error rather than a silent local run.

use std::sync::Arc;

use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::SessionContext;
use object_store::ObjectStore;

use logferry_aggregate::session::{Engine, register_runtime_store};
use logferry_core::config::ClusterTarget;
use logferry_export::WarehouseHandle;

use crate::context::Ctx;
use crate::error::{Error, Result};

/// The stores a query may read, by the name they are registered under.
pub fn stores(ctx: &Ctx) -> Vec<(&'static str, Arc<dyn ObjectStore>)> {
    let mut v = vec![("lake", ctx.lake.store.clone())];
    if let WarehouseHandle::Local(wh) = &ctx.warehouse {
        v.push(("warehouse", wh.location().store.clone()));
    }
    v
}

/// An engine on the aggregate's memory limit and spill directory.
pub fn engine(ctx: &Ctx) -> Result<Engine> {
    let a = &ctx.settings.aggregate;
    Ok(Engine::new(a.memory_limit, Some(&a.spill_dir))?)
}

/// The engine's runtime with every store of [`stores`] registered.
pub fn runtime(ctx: &Ctx, engine: &Engine) -> Result<Arc<RuntimeEnv>> {
    let rt = engine.runtime();
    for (name, store) in stores(ctx) {
        register_runtime_store(&rt, name, store)?;
    }
    Ok(rt)
}

/// A session whose queries run where `target` says: in this process under
/// the aggregate's memory limit, or on a Ballista cluster.
pub async fn session(ctx: &Ctx, target: &ClusterTarget) -> Result<SessionContext> {
    match target {
        ClusterTarget::Local => Ok(engine(ctx)?.session()),
        _ => ballista_session(ctx, target).await,
    }
}

#[cfg(not(feature = "ballista"))]
async fn ballista_session(_: &Ctx, target: &ClusterTarget) -> Result<SessionContext> {
    Err(not_built(&format!("[cluster] scheduler = {target}")))
}

/// The error of a Ballista command in a build without the feature.
pub fn not_built(what: &str) -> Error {
    Error::Config(format!(
        "{what} needs a Ballista cluster, and this logferry was built without one: build it \
         with `cargo build --release -p logferry --features ballista`, or set [cluster] \
         scheduler = \"\" to run queries in this process"
    ))
}

#[cfg(feature = "ballista")]
async fn ballista_session(ctx: &Ctx, target: &ClusterTarget) -> Result<SessionContext> {
    match target {
        ClusterTarget::Remote(url) => imp::session(ctx, Some(url)).await,
        _ => imp::session(ctx, None).await,
    }
}

#[cfg(feature = "ballista")]
pub use imp::{ExecutorOptions, run_executor, run_scheduler};

#[cfg(feature = "ballista")]
mod imp {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use ballista::prelude::{SessionConfigExt, SessionContextExt};
    use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
    use datafusion::execution::{SessionState, SessionStateBuilder};
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::{engine, runtime};
    use crate::context::Ctx;
    use crate::error::{Error, Result};
    use logferry_aggregate::session::{cores, with_semantics};

    fn cluster_error(what: &str, e: impl std::fmt::Display) -> Error {
        Error::Fatal(format!("Ballista cluster: {what}: {e}"))
    }

    /// A session state with logferry's settings on Ballista's, on a runtime
    /// that holds the stores and the memory pool.
    fn state(ctx: &Ctx, config: SessionConfig) -> Result<SessionState> {
        let engine = engine(ctx)?;
        let rt = runtime(ctx, &engine)?;
        let config = engine.sized(with_semantics(config));
        Ok(SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(rt)
            .with_default_features()
            .build())
    }

    /// A session on the scheduler at `url`, or (`None`) on this context's
    /// standalone cluster, started the first time.
    pub(super) async fn session(ctx: &Ctx, url: Option<&str>) -> Result<SessionContext> {
        let url = match url {
            Some(url) => url.to_string(),
            None => ctx
                .standalone
                .get_or_try_init(|| start_standalone(ctx))
                .await?
                .clone(),
        };
        let state = state(ctx, SessionConfig::new_with_ballista())?;
        SessionContext::remote_with_state(&url, state)
            .await
            .map_err(|e| cluster_error(&format!("connecting to {url}"), e))
    }

    /// Starts a scheduler and an executor in this process, once per
    /// context; returns the scheduler's `df://` URL.
    async fn start_standalone(ctx: &Ctx) -> Result<String> {
        let state = state(ctx, SessionConfig::new_with_ballista())?;
        let addr = ballista_scheduler::standalone::new_standalone_scheduler_from_state(&state)
            .await
            .map_err(|e| cluster_error("starting the standalone scheduler", e))?;
        let grpc = format!("http://localhost:{}", addr.port());
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        let scheduler = loop {
            match SchedulerGrpcClient::connect(grpc.clone()).await {
                Ok(c) => break c,
                Err(e) if tokio::time::Instant::now() > deadline => {
                    return Err(cluster_error(&format!("connecting to {grpc}"), e));
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        };
        let slots = cores();
        ballista_executor::new_standalone_executor_from_state(scheduler, slots, &state)
            .await
            .map_err(|e| cluster_error("starting the standalone executor", e))?;
        tracing::info!(scheduler = %addr, slots, "Started a standalone Ballista cluster in this process.");
        Ok(format!("df://localhost:{}", addr.port()))
    }

    /// Runs a Ballista scheduler that knows the lake, until the process is
    /// stopped.
    pub async fn run_scheduler(ctx: &Ctx, bind: SocketAddr) -> Result<()> {
        use ballista_scheduler::cluster::BallistaCluster;
        use ballista_scheduler::config::SchedulerConfig;
        let c = ctx.clone();
        let config = SchedulerConfig::default()
            .with_port(bind.port())
            .with_override_config_producer(Arc::new(SessionConfig::new_with_ballista))
            .with_override_session_builder(Arc::new(move |cfg: SessionConfig| {
                state(&c, cfg).map_err(|e| datafusion::error::DataFusionError::External(e.into()))
            }));
        let cluster = BallistaCluster::new_from_config(&config)
            .await
            .map_err(|e| cluster_error("the scheduler's state", e))?;
        tracing::info!(%bind, "Ballista scheduler listening.");
        ballista_scheduler::scheduler_process::start_server(cluster, bind, Arc::new(config))
            .await
            .map_err(|e| cluster_error(&format!("the scheduler on {bind}"), e))
    }

    /// Where an executor listens and how much it runs at once.
    #[derive(Debug, Clone)]
    pub struct ExecutorOptions {
        /// The scheduler, `host:port`.
        pub scheduler: String,
        /// Address to bind.
        pub bind_host: String,
        /// Host name the scheduler and other executors reach this one by.
        pub external_host: Option<String>,
        /// Arrow Flight port (shuffle data).
        pub port: u16,
        /// gRPC port (tasks pushed by the scheduler).
        pub grpc_port: u16,
        /// Tasks run at once; 0 for one per core.
        pub slots: usize,
    }

    /// Runs a Ballista executor that knows the lake, until the process is
    /// stopped.
    pub async fn run_executor(ctx: &Ctx, o: ExecutorOptions) -> Result<()> {
        use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
        let (host, port) = o
            .scheduler
            .trim_start_matches("df://")
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
            .ok_or_else(|| {
                Error::Config(format!(
                    "--scheduler {:?}: expected host:port (df://host:port)",
                    o.scheduler
                ))
            })?;
        let engine = engine(ctx)?;
        let rt = runtime(ctx, &engine)?;
        let work_dir = ctx.settings.aggregate.spill_dir.join("ballista");
        std::fs::create_dir_all(&work_dir)
            .map_err(|e| Error::io(work_dir.display().to_string(), e))?;
        let slots = if o.slots == 0 { cores() } else { o.slots };
        let config = ExecutorProcessConfig {
            bind_host: o.bind_host.clone(),
            external_host: o.external_host.clone(),
            port: o.port,
            grpc_port: o.grpc_port,
            scheduler_host: host,
            scheduler_port: port,
            vcores: slots,
            // Wait for a scheduler that is not up yet (started beside it)
            // rather than exit at once.
            scheduler_connect_timeout_seconds: 60,
            work_dir: Some(work_dir.display().to_string()),
            // Shuffle files of jobs the scheduler did not clean up (it
            // died, say) go after a day.
            job_data_ttl_seconds: 86_400,
            job_data_clean_up_interval_seconds: 3_600,
            print_thread_info: false,
            override_config_producer: Some(Arc::new(SessionConfig::new_with_ballista)),
            override_runtime_producer: Some(Arc::new(move |_: &SessionConfig| Ok(rt.clone()))),
            ..Default::default()
        };
        tracing::info!(scheduler = %o.scheduler, port = o.port, grpc_port = o.grpc_port, slots, "Ballista executor starting.");
        start_executor_process(Arc::new(config))
            .await
            .map_err(|e| cluster_error("the executor", e))
    }
}
