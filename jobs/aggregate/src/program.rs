//! The SQL program of the aggregate stage: `dedupe.sql`, `rules/*.sql` and
//! `rollups/*.sql`, from the copy built into the binary or from a directory.

use std::path::Path;

use logferry_core::ids::IdHasher;

use crate::error::{Error, Result};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_sql.rs"));
}

/// One SQL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlFile {
    /// File stem: reason code for rules, table name for rollups.
    pub name: String,
    /// Where it came from, for messages.
    pub origin: String,
    /// The query.
    pub sql: String,
}

/// The whole program.
#[derive(Debug, Clone)]
pub struct SqlProgram {
    /// Dedupe query over `window_input`.
    pub dedupe: SqlFile,
    /// Rules over `deduped`, in name order.
    pub rules: Vec<SqlFile>,
    /// Rollups over `curated`, in name order.
    pub rollups: Vec<SqlFile>,
    /// Hash of every file: part of each window's run id, so changing the SQL
    /// redoes the windows it is run over.
    pub hash: String,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn file(name: &str, origin: String, sql: &str) -> Result<SqlFile> {
    if !valid_name(name) {
        return Err(Error::Sql {
            file: origin,
            message: format!(
                "{name:?} is not a valid rule or rollup name: use [a-z][a-z0-9_]{{0,63}}"
            ),
        });
    }
    let sql = sql.trim().trim_end_matches(';').trim().to_string();
    if sql.is_empty() {
        return Err(Error::Sql {
            file: origin,
            message: "the file holds no query".into(),
        });
    }
    Ok(SqlFile {
        name: name.to_string(),
        origin,
        sql,
    })
}

impl SqlProgram {
    fn build(dedupe: SqlFile, mut rules: Vec<SqlFile>, mut rollups: Vec<SqlFile>) -> Result<Self> {
        rules.sort_by(|a, b| a.name.cmp(&b.name));
        rollups.sort_by(|a, b| a.name.cmp(&b.name));
        for r in &rollups {
            if ["landing", "dlq", "curated", "warehouse", "log_records"].contains(&r.name.as_str())
            {
                return Err(Error::Sql {
                    file: r.origin.clone(),
                    message: format!("a rollup may not be called {:?}", r.name),
                });
            }
        }
        let mut h = IdHasher::new();
        h.part(dedupe.sql.as_bytes());
        for f in rules.iter().chain(&rollups) {
            h.part(f.name.as_bytes()).part(f.sql.as_bytes());
        }
        Ok(SqlProgram {
            hash: h.hex(),
            dedupe,
            rules,
            rollups,
        })
    }

    /// The copy of `sql/` built into the binary.
    pub fn builtin() -> Result<Self> {
        let f = |dir: &str, pairs: &[(&str, &str)]| -> Result<Vec<SqlFile>> {
            pairs
                .iter()
                .map(|(n, s)| file(n, format!("built-in sql/{dir}/{n}.sql"), s))
                .collect()
        };
        Self::build(
            file("dedupe", "built-in sql/dedupe.sql".into(), embedded::DEDUPE)?,
            f("rules", embedded::RULES)?,
            f("rollups", embedded::ROLLUPS)?,
        )
    }

    /// Reads the program from a directory laid out like `sql/`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let read = |p: &Path| -> Result<String> {
            std::fs::read_to_string(p)
                .map_err(|e| Error::Core(logferry_core::Error::io(p.display(), e)))
        };
        let list = |sub: &str| -> Result<Vec<SqlFile>> {
            let d = dir.join(sub);
            let mut out = Vec::new();
            let rd = match std::fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(Error::Core(logferry_core::Error::io(d.display(), e))),
            };
            for e in rd {
                let p = e
                    .map_err(|e| Error::Core(logferry_core::Error::io(d.display(), e)))?
                    .path();
                if p.extension().is_some_and(|x| x == "sql") {
                    let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
                    out.push(file(stem, p.display().to_string(), &read(&p)?)?);
                }
            }
            Ok(out)
        };
        let dedupe = dir.join("dedupe.sql");
        Self::build(
            file("dedupe", dedupe.display().to_string(), &read(&dedupe)?)?,
            list("rules")?,
            list("rollups")?,
        )
    }

    /// The configured program: `sql_dir` if set, else the built-in copy.
    pub fn load(sql_dir: Option<&Path>) -> Result<Self> {
        match sql_dir {
            Some(d) => Self::from_dir(d),
            None => Self::builtin(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_program_matches_the_directory() {
        let b = SqlProgram::builtin().unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql");
        let d = SqlProgram::from_dir(&dir).unwrap();
        assert_eq!(b.hash, d.hash, "built-in copy is stale");
        let rules: Vec<_> = b.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(rules, ["empty_message", "invalid_level", "invalid_service"]);
        let rollups: Vec<_> = b.rollups.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(rollups, ["error_rate", "logs_per_minute"]);
    }

    #[test]
    fn bad_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dedupe.sql"), "SELECT * FROM window_input").unwrap();
        std::fs::create_dir(dir.path().join("rollups")).unwrap();
        std::fs::write(dir.path().join("rollups/Bad-Name.sql"), "SELECT 1").unwrap();
        let e = SqlProgram::from_dir(dir.path()).unwrap_err();
        assert!(e.to_string().contains("Bad-Name"), "{e}");
        std::fs::remove_file(dir.path().join("rollups/Bad-Name.sql")).unwrap();
        std::fs::write(dir.path().join("rollups/curated.sql"), "SELECT 1").unwrap();
        assert!(SqlProgram::from_dir(dir.path()).is_err());
    }
}
