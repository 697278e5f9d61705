//! What every command needs: the validated settings and the opened stores.

use std::path::PathBuf;
use std::sync::Arc;

use logferry_core::config::{Config, DATA_DIR_CONFIG, Settings};
use logferry_core::ledger::Ledger;
use logferry_core::partition::STATE;
use logferry_core::storage::Location;
use logferry_export::{ExportStore, WarehouseHandle};

use crate::cli::Global;
use crate::error::{Result, ResultExt};

/// Settings and stores.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Validated settings.
    pub settings: Arc<Settings>,
    /// The lake.
    pub lake: Location,
    /// The export store.
    pub export: Arc<dyn ExportStore>,
    /// The warehouse.
    pub warehouse: WarehouseHandle,
    /// The `df://` URL of the standalone Ballista cluster this context
    /// started (`[cluster] scheduler = "standalone"`), once started.
    pub standalone: Arc<tokio::sync::OnceCell<String>>,
}

/// The config file to use: the flag or env, else `<data-dir>/logferry.toml`.
pub fn config_file(g: &Global) -> Option<PathBuf> {
    g.config.clone().or_else(|| {
        let p = g.data_dir.join(DATA_DIR_CONFIG);
        p.is_file().then_some(p)
    })
}

/// Loads and validates the configuration.
pub fn settings(g: &Global) -> Result<Arc<Settings>> {
    let file = config_file(g);
    let (config, source) = Config::load(file.as_deref(), std::env::vars())?;
    if let Some(f) = &source.file {
        tracing::info!(file = %f.display(), "Using configuration file.");
    }
    Ok(Arc::new(config.validate(&g.data_dir)?))
}

impl Ctx {
    /// Loads the configuration and opens every store.
    pub async fn open(g: &Global) -> Result<Self> {
        Self::from_settings(settings(g)?).await
    }

    /// Opens every store of validated settings.
    pub async fn from_settings(settings: Arc<Settings>) -> Result<Self> {
        let lake = Location::open_with(&settings.lake_url, &settings.aws)
            .with_context(|| format!("opening the lake {}", settings.lake_url))?;
        let export = logferry_export::store::open(&settings)
            .await
            .with_context(|| format!("opening the export store {}", settings.export_url))?;
        let warehouse = WarehouseHandle::open(
            &settings,
            export.clone(),
            Ledger::new(lake.store.clone(), STATE),
        )
        .await
        .context("opening the warehouse")?;
        Ok(Ctx {
            settings,
            lake,
            export,
            warehouse,
            standalone: Default::default(),
        })
    }

    /// The lake's ledger.
    pub fn ledger(&self) -> Ledger {
        Ledger::new(self.lake.store.clone(), STATE)
    }

    /// The configured tenants' ids.
    pub fn tenant_ids(&self) -> Vec<String> {
        self.settings.tenant_ids()
    }

    /// The pipeline's clock: the configured reference time, else the wall
    /// clock.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.settings.now()
    }
}
