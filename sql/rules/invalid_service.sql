-- Service names group rollups and cluster the warehouse table: letters,
-- digits and . _ / - only, at most 128 characters.
SELECT tenant_id, event_id,
       'service ' || substr(service, 1, 80) || ' is not a service name ([A-Za-z0-9][A-Za-z0-9._/-]{0,127})' AS detail
FROM deduped
WHERE NOT regexp_like(service, '^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$')
