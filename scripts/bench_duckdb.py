"""The DuckDB side of scripts/bench.sh: one timed step per process.

usage: python bench_duckdb.py convert IN.ndjson OUT.parquet
       python bench_duckdb.py rollup IN.parquet OUT.parquet
       python bench_duckdb.py run LANDING_DIR OUT_DIR
         (logferry run's work on the same landed Parquet: dedupe, three
         rules, curated rows per tenant, rejected rows, two rollups, and the
         export and load copies of the curated objects)
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
elif step == "run":
    import os
    import shutil

    src = f"{src}/**/*.parquet"
    os.makedirs(dst, exist_ok=True)
    # Spill past DuckDB's default memory limit into the output folder.
    con.execute(f"SET temp_directory = '{dst}/tmp'")
    con.execute(
        "CREATE TEMP TABLE deduped AS SELECT * EXCLUDE (copy) FROM ("
        " SELECT *, row_number() OVER (PARTITION BY tenant_id, event_id"
        "  ORDER BY ingest_time, source, message) AS copy"
        f" FROM read_parquet('{src}', hive_partitioning = false)) WHERE copy = 1"
    )
    con.execute(
        "CREATE TEMP TABLE violations AS SELECT tenant_id, event_id,"
        " arg_min(reason, rule_order) AS reason, arg_min(detail, rule_order) AS detail FROM ("
        " SELECT tenant_id, event_id, 'empty_message' AS reason, 0 AS rule_order,"
        "  'message is empty or only whitespace' AS detail"
        "  FROM deduped WHERE regexp_full_match(message, '\\s*')"
        " UNION ALL SELECT tenant_id, event_id, 'invalid_level', 1,"
        "  'level ' || substr(level, 1, 40) || ' is not one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL'"
        "  FROM deduped WHERE level NOT IN ('TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL')"
        " UNION ALL SELECT tenant_id, event_id, 'invalid_service', 2,"
        "  'service ' || substr(service, 1, 80) || ' is not a service name'"
        "  FROM deduped WHERE NOT regexp_full_match(service, '[A-Za-z0-9][A-Za-z0-9._/-]{0,127}')"
        ") GROUP BY tenant_id, event_id"
    )
    con.execute(
        "CREATE VIEW curated AS SELECT d.* FROM deduped d"
        " ANTI JOIN violations v USING (tenant_id, event_id)"
    )
    curated = f"{dst}/curated"
    con.execute(
        "COPY (SELECT * FROM curated ORDER BY tenant_id, \"timestamp\", event_id)"
        f" TO '{curated}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (tenant_id),"
        " WRITE_PARTITION_COLUMNS true)"
    )
    con.execute(
        "COPY (SELECT to_json(d) AS raw, v.reason, v.detail, d.tenant_id, d.event_id"
        " FROM deduped d JOIN violations v USING (tenant_id, event_id)"
        " ORDER BY d.tenant_id, d.event_id)"
        f" TO '{dst}/dlq.parquet' (FORMAT parquet, COMPRESSION zstd)"
    )
    con.execute(
        "COPY (SELECT tenant_id, service, date_trunc('minute', \"timestamp\") AS minute,"
        " count(*) AS records,"
        " sum(CASE WHEN level IN ('ERROR', 'FATAL') THEN 1 ELSE 0 END) AS errors,"
        " sum(CASE WHEN level IN ('ERROR', 'FATAL') THEN 1 ELSE 0 END)::DOUBLE / count(*) AS error_rate"
        " FROM curated GROUP BY ALL ORDER BY ALL)"
        f" TO '{dst}/error_rate.parquet' (FORMAT parquet, COMPRESSION zstd)"
    )
    con.execute(
        "COPY (SELECT tenant_id, date_trunc('minute', \"timestamp\") AS minute, service, level,"
        " count(*) AS records, sum(strlen(message)) AS message_bytes"
        " FROM curated GROUP BY ALL ORDER BY ALL)"
        f" TO '{dst}/logs_per_minute.parquet' (FORMAT parquet, COMPRESSION zstd)"
    )
    rows = con.execute("SELECT count(*) FROM curated").fetchone()[0]
    bad = con.execute("SELECT count(*) FROM violations").fetchone()[0]
    # The export and the load each copy the curated objects.
    shutil.copytree(curated, f"{dst}/export")
    shutil.copytree(curated, f"{dst}/warehouse")
    size = sum(
        os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(curated) for f in fs
    )
    print(json.dumps({"curated_rows": rows, "rejected": bad, "curated_bytes": size}))
else:
    sys.exit(f"unknown step {step}")
