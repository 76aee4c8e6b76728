-- Runs once, when the postgres volume is first initialised (docker-entrypoint-initdb.d).
-- POSTGRES_DB creates `dagster` (Dagster's run/event/schedule storage); this creates the
-- warehouse database that FINTRACK_WAREHOUSE_URL points at.
CREATE DATABASE fintrack;
