-- ops: as at the end of the fresh install script (sqlsrc/90_grants.sql),
-- nothing created by the update is left to PUBLIC; each part grants
-- explicitly what its objects need.
REVOKE ALL ON ALL TABLES IN SCHEMA apikey_usage FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA apikey_usage FROM PUBLIC;

--@include 97_owner.sql GRANT USAGE, CREATE ON SCHEMA apikey_usage TO apikey_usage_owner;

