//! What every command needs: the validated settings and the opened stores.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};

use logferry_core::config::{Config, DATA_DIR_CONFIG, Settings};
use logferry_core::storage::Location;
use logferry_export::LocalWarehouse;

use crate::cli::Global;

/// Settings and stores.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Validated settings.
    pub settings: Arc<Settings>,
    /// The lake.
    pub lake: Location,
    /// The export store.
    pub export: Location,
    /// The warehouse.
    pub warehouse: Arc<LocalWarehouse>,
}

/// The config file to use: the flag or env, else `<data-dir>/logferry.toml`.
pub fn config_file(g: &Global) -> Option<PathBuf> {
    g.config.clone().or_else(|| {
        let p = g.data_dir.join(DATA_DIR_CONFIG);
        p.is_file().then_some(p)
    })
}

impl Ctx {
    /// Loads the configuration and opens every store.
    pub fn open(g: &Global) -> Result<Self> {
        let file = config_file(g);
        let (config, source) = Config::load(file.as_deref(), std::env::vars())?;
        if let Some(f) = &source.file {
            tracing::info!(file = %f.display(), "Using configuration file.");
        }
        let settings = Arc::new(config.validate(&g.data_dir)?);
        let lake = Location::open(&settings.lake_url).context("opening the lake")?;
        let export = Location::open(&settings.export_url).context("opening the export store")?;
        let warehouse = logferry_export::warehouse::open(&settings, export.clone())
            .context("opening the warehouse")?;
        Ok(Ctx {
            settings,
            lake,
            export,
            warehouse,
        })
    }
}
