-- A record must say something: an empty or all-whitespace message is refused.
SELECT tenant_id, event_id, 'message is empty or only whitespace' AS detail
FROM deduped
WHERE regexp_like(message, '^\s*$')
