-- Dedupe: exact redeliveries share (tenant_id, event_id). The first received
-- copy is kept (ordered by ingest_time, then source and message so the choice
-- is deterministic). Records that merely share a request_id are distinct
-- events and are all kept.
-- Reads window_input (the window's landing rows); returns the same columns.
--
-- Written as "keep a row when the row before it, in key order, has another
-- key" rather than row_number() per key: every event is its own partition,
-- and per-partition window state made row_number() twice as slow on a
-- million rows.
SELECT event_id, tenant_id, "timestamp", ingest_time, level, service, message,
       request_id, trace_id, source, source_account, attributes
FROM (
  SELECT *,
         lag(tenant_id) OVER copies AS previous_tenant,
         lag(event_id) OVER copies AS previous_event
  FROM window_input
  WINDOW copies AS (ORDER BY tenant_id, event_id, ingest_time, source, message)
) AS ordered
WHERE (ordered.previous_event IS DISTINCT FROM ordered.event_id)
   OR (ordered.previous_tenant IS DISTINCT FROM ordered.tenant_id)
