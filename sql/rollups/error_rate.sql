-- Error rate per minute by tenant and service: ERROR and FATAL records over
-- all records.
SELECT tenant_id,
       service,
       date_trunc('minute', "timestamp") AS minute,
       count(*) AS records,
       sum(CASE WHEN level IN ('ERROR', 'FATAL') THEN 1 ELSE 0 END) AS errors,
       CAST(sum(CASE WHEN level IN ('ERROR', 'FATAL') THEN 1 ELSE 0 END) AS DOUBLE)
         / CAST(count(*) AS DOUBLE) AS error_rate
FROM curated
GROUP BY tenant_id, service, date_trunc('minute', "timestamp")
ORDER BY tenant_id, service, minute
