-- Dedupe: exact redeliveries share (tenant_id, event_id). The first received
-- copy is kept. Records that merely share a request_id are distinct events and
-- are all kept.
-- Reads window_input (the window's landing rows); returns the same columns.
SELECT event_id, tenant_id, "timestamp", ingest_time, level, service, message,
       request_id, trace_id, source, source_account, attributes
FROM (
  SELECT *,
         row_number() OVER (
           PARTITION BY tenant_id, event_id
           ORDER BY ingest_time, source, message
         ) AS copy_number
  FROM window_input
) AS numbered
WHERE copy_number = 1
