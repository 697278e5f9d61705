-- The level must be a known one (the forward stage already upper-cased it).
SELECT tenant_id, event_id,
       'level ' || substr(level, 1, 40) || ' is not one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL' AS detail
FROM deduped
WHERE level NOT IN ('TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL')
