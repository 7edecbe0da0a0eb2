-- External schema over the curated Glue database: Redshift Spectrum reads the curated Parquet
-- through the Glue Data Catalog and Lake Formation, with the namespace's Spectrum role.
CREATE EXTERNAL SCHEMA IF NOT EXISTS curated
FROM DATA CATALOG
DATABASE '{{curated_database}}'
IAM_ROLE '{{spectrum_role_arn}}';
