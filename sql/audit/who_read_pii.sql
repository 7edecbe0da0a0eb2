-- Who read objects under the PII-bearing prefixes of the lake in the last N days.
-- Execution parameter 1: N (days), e.g. 7. Newest reads first; failed reads are excluded.
SELECT
    useridentity.arn AS principal_arn,
    useridentity.type AS principal_type,
    json_extract_scalar(requestparameters, '$.bucketName') AS bucket,
    json_extract_scalar(requestparameters, '$.key') AS object_key,
    eventname AS action,
    sourceipaddress AS source_ip,
    from_iso8601_timestamp(eventtime) AS event_time
FROM cloudtrail
WHERE eventsource = 's3.amazonaws.com'
    AND eventname IN ('GetObject', 'SelectObjectContent', 'RestoreObject')
    AND errorcode IS NULL
    AND "timestamp" >= date_format(date_add('day', -CAST(? AS integer), current_date), '%Y/%m/%d')
    AND regexp_like(json_extract_scalar(requestparameters, '$.key'), '{{pii_key_regex}}')
ORDER BY event_time DESC
