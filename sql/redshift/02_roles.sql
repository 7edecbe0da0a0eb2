-- Warehouse roles: analyst reads the curated tables without their PII columns (curated_analyst)
-- and the contacts masked; pii_reader reads them whole and the contacts in clear. Grant them to
-- users (or identity-centre groups) with GRANT ROLE; nothing here grants a role to anyone.
-- ok-if-exists
CREATE ROLE analyst;
-- ok-if-exists
CREATE ROLE pii_reader;
-- Deployments before 7 December 2026 let analyst use curated, PII columns included: taken back.
REVOKE USAGE ON SCHEMA curated FROM ROLE analyst;
GRANT USAGE ON SCHEMA curated_analyst TO ROLE analyst;
GRANT USAGE ON SCHEMA curated TO ROLE pii_reader;
