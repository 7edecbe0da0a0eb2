-- Who read objects under the PII-bearing prefixes of the lake in the last N days.
-- Execution parameter 1: N (days), e.g. 7. Newest reads first; failed reads are excluded.
-- A read through Lake Formation (Athena, Redshift Spectrum, a crawler) reaches S3 as the zone's
-- registration role, in a session Lake Formation names AWSLF-...; the GetDataAccess event that
-- vended the session names who asked, for which table, through which service. Such a read is
-- reported as that principal's, through_lake_formation true: Lake Formation filtered its columns
-- and rows as granted. Any other read (a data engineer, a Spark notebook) is its caller's own.
-- A read whose session was vended before the first day of the window keeps the AWSLF session.
WITH events AS (
    SELECT *
    FROM cloudtrail
    WHERE "timestamp" >= date_format(date_add('day', -CAST(? AS integer), current_date), '%Y/%m/%d')
        AND errorcode IS NULL
        AND (
            (eventsource = 's3.amazonaws.com'
                AND eventname IN ('GetObject', 'SelectObjectContent', 'RestoreObject')
                AND regexp_like(json_extract_scalar(requestparameters, '$.key'), '{{pii_key_regex}}'))
            OR (eventsource = 'lakeformation.amazonaws.com' AND eventname = 'GetDataAccess')
        )
),
reads AS (
    SELECT
        useridentity.arn AS caller_arn,
        element_at(split(useridentity.arn, '/'), -1) AS session_name,
        json_extract_scalar(requestparameters, '$.bucketName') AS bucket,
        json_extract_scalar(requestparameters, '$.key') AS object_key,
        eventname AS action,
        sourceipaddress AS source_ip,
        from_iso8601_timestamp(eventtime) AS event_time
    FROM events
    WHERE eventsource = 's3.amazonaws.com'
),
vended AS (
    SELECT
        json_extract_scalar(additionaleventdata, '$.lakeFormationRoleSessionName') AS session_name,
        arbitrary(useridentity.arn) AS principal_arn,
        arbitrary(json_extract_scalar(requestparameters, '$.tableArn')) AS table_arn,
        arbitrary(sourceipaddress) AS via
    FROM events
    WHERE eventsource = 'lakeformation.amazonaws.com'
        AND json_extract_scalar(additionaleventdata, '$.lakeFormationRoleSessionName') IS NOT NULL
    GROUP BY 1
)
SELECT
    coalesce(vended.principal_arn, reads.caller_arn) AS principal_arn,
    reads.session_name LIKE 'AWSLF-%' AS through_lake_formation,
    vended.table_arn,
    coalesce(vended.via, reads.source_ip) AS via,
    reads.bucket,
    reads.object_key,
    reads.action,
    reads.event_time
FROM reads
LEFT JOIN vended ON reads.session_name = vended.session_name
ORDER BY reads.event_time DESC
