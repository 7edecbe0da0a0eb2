-- Who wrote, copied over, deleted or re-permissioned objects of the CDK assets bucket in the last N
-- days. Glue reads each job's script there at every run; a deployment publishes as the bootstrap's
-- file-publishing role (cdk-...-file-publishing-role-...), anyone else is the alert's case.
-- Execution parameter 1: N (days), e.g. 30. Newest first; denied attempts are included.
SELECT
    from_iso8601_timestamp(eventtime) AS event_time,
    useridentity.arn AS principal_arn,
    eventname AS action,
    json_extract_scalar(requestparameters, '$.key') AS object_key,
    errorcode AS error_code
FROM cloudtrail
WHERE eventsource = 's3.amazonaws.com'
    AND eventname IN (
        'PutObject', 'CopyObject', 'CompleteMultipartUpload', 'PutObjectAcl', 'DeleteObject', 'DeleteObjects'
    )
    AND json_extract_scalar(requestparameters, '$.bucketName') = '{{assets_bucket}}'
    AND "timestamp" >= date_format(date_add('day', -CAST(? AS integer), current_date), '%Y/%m/%d')
ORDER BY event_time DESC
