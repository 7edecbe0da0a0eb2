-- External schemas over the curated Glue database: Redshift Spectrum reads the curated Parquet
-- through the Glue Data Catalog and Lake Formation, as the schema's IAM role, for every user who
-- may use the schema. So the role decides what a schema shows (Redshift cannot mask an external
-- table's columns): curated reads the tables whole (the admin, the refresh procedures,
-- pii_reader); curated_analyst as analysts read them in Athena, no PII column.
CREATE EXTERNAL SCHEMA IF NOT EXISTS curated
FROM DATA CATALOG
DATABASE '{{curated_database}}'
IAM_ROLE '{{spectrum_role_arn}}';
CREATE EXTERNAL SCHEMA IF NOT EXISTS curated_analyst
FROM DATA CATALOG
DATABASE '{{curated_database}}'
IAM_ROLE '{{analyst_spectrum_role_arn}}';
