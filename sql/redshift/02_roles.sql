-- Warehouse roles: analyst sees PII masked, pii_reader sees it in clear. Grant them to users
-- (or identity-centre groups) with GRANT ROLE; nothing here grants a role to anyone.
-- ok-if-exists
CREATE ROLE analyst;
-- ok-if-exists
CREATE ROLE pii_reader;
GRANT USAGE ON SCHEMA curated TO ROLE analyst;
GRANT USAGE ON SCHEMA curated TO ROLE pii_reader;
