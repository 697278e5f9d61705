//! Builds the copy of `sql/` carried by the binary: every `.sql` file of
//! `dedupe.sql`, `rules/` and `rollups/`, so a new rule or rollup needs no code.

use std::fmt::Write;
use std::path::Path;

fn list(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "sql") {
                let stem = p
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default()
                    .to_string();
                out.push((stem, p.canonicalize().unwrap_or(p).display().to_string()));
            }
        }
    }
    out.sort();
    out
}

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let sql = Path::new(&manifest).join("../../sql");
    println!("cargo:rerun-if-changed={}", sql.display());
    println!("cargo:rerun-if-changed={}", sql.join("rules").display());
    println!("cargo:rerun-if-changed={}", sql.join("rollups").display());
    let mut code = String::new();
    let dedupe = sql.join("dedupe.sql");
    let dedupe = dedupe.canonicalize().unwrap_or(dedupe);
    let _ = writeln!(
        code,
        "pub const DEDUPE: &str = include_str!({:?});",
        dedupe.display().to_string()
    );
    for (name, dir) in [("RULES", "rules"), ("ROLLUPS", "rollups")] {
        let _ = writeln!(code, "pub const {name}: &[(&str, &str)] = &[");
        for (stem, path) in list(&sql.join(dir)) {
            println!("cargo:rerun-if-changed={path}");
            let _ = writeln!(code, "    ({stem:?}, include_str!({path:?})),");
        }
        let _ = writeln!(code, "];");
    }
    let out =
        Path::new(&std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into())).join("embedded_sql.rs");
    std::fs::write(out, code).unwrap_or_else(|e| panic!("writing embedded_sql.rs: {e}"));
}
