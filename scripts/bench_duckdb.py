"""The DuckDB side of scripts/bench.sh: one timed step per process.

usage: python bench_duckdb.py convert IN.ndjson OUT.parquet
       python bench_duckdb.py rollup IN.parquet OUT.parquet
Prints one JSON line with the row count; time and memory are measured outside.
"""
import json
import sys

import duckdb

step, src, dst = sys.argv[1], sys.argv[2], sys.argv[3]
con = duckdb.connect()
if step == "convert":
    n = con.execute(
        f"COPY (SELECT * FROM read_json('{src}', format='newline_delimited')) "
        f"TO '{dst}' (FORMAT parquet, COMPRESSION zstd)"
    ).fetchone()[0]
    print(json.dumps({"rows": n, "threads": con.execute("SELECT current_setting('threads')").fetchone()[0]}))
elif step == "rollup":
    n = con.execute(
        f"COPY (SELECT tenant_id, service, level, (\"timestamp\" // 60000) * 60000 AS minute_ms, "
        f"count(*) AS records FROM read_parquet('{src}') GROUP BY ALL) "
        f"TO '{dst}' (FORMAT parquet, COMPRESSION zstd)"
    ).fetchone()[0]
    print(json.dumps({"groups": n}))
else:
    sys.exit(f"unknown step {step}")
