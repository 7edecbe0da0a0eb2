-- Warehouse roles: analyst reads the curated tables without their PII columns (curated_analyst)
-- and the contacts masked; pii_reader reads them whole and the contacts in clear. The analyst
-- and engineer personas sign in through IAM with them (their RedshiftDbRoles tag); grant them to
-- other users with GRANT ROLE.
-- ok-if-exists
CREATE ROLE analyst;
-- ok-if-exists
CREATE ROLE pii_reader;
-- Deployments before 7 December 2026 let analyst use curated, PII columns included: taken back.
REVOKE USAGE ON SCHEMA curated FROM ROLE analyst;
GRANT USAGE ON SCHEMA curated_analyst TO ROLE analyst;
GRANT USAGE ON SCHEMA curated TO ROLE pii_reader;
