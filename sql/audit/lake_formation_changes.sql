-- Who changed Lake Formation permissions, tags, tag expressions, filters, registrations, admins,
-- enforcement (opt-ins) or its IAM Identity Center connection in the last N days.
-- Execution parameter 1: N (days), e.g. 30. Newest changes first; denied attempts are included.
SELECT
    from_iso8601_timestamp(eventtime) AS event_time,
    useridentity.arn AS principal_arn,
    eventname AS action,
    errorcode AS error_code,
    requestparameters AS request
FROM cloudtrail
WHERE eventsource = 'lakeformation.amazonaws.com'
    AND eventname IN (
        'GrantPermissions', 'RevokePermissions', 'BatchGrantPermissions', 'BatchRevokePermissions',
        'PutDataLakeSettings', 'RegisterResource', 'DeregisterResource', 'UpdateResource',
        'CreateLFTag', 'UpdateLFTag', 'DeleteLFTag', 'AddLFTagsToResource', 'RemoveLFTagsFromResource',
        'CreateDataCellsFilter', 'UpdateDataCellsFilter', 'DeleteDataCellsFilter',
        -- a grant can name a tag expression: changing the expression changes what it grants
        'CreateLFTagExpression', 'UpdateLFTagExpression', 'DeleteLFTagExpression',
        'CreateLakeFormationOptIn', 'DeleteLakeFormationOptIn',
        'CreateLakeFormationIdentityCenterConfiguration', 'UpdateLakeFormationIdentityCenterConfiguration',
        'DeleteLakeFormationIdentityCenterConfiguration'
    )
    AND "timestamp" >= date_format(date_add('day', -CAST(? AS integer), current_date), '%Y/%m/%d')
ORDER BY event_time DESC
