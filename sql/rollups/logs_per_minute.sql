-- Records and message bytes per minute, by tenant, service and level.
SELECT tenant_id,
       date_trunc('minute', "timestamp") AS minute,
       service,
       level,
       count(*) AS records,
       sum(octet_length(message)) AS message_bytes
FROM curated
GROUP BY tenant_id, date_trunc('minute', "timestamp"), service, level
ORDER BY tenant_id, minute, service, level
