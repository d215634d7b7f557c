
------------------------------------------------------------------------
-- Visibility: the one definition of "what the calling role may see".
-- Every view and analytics function filters through these two.  NULL
-- means "everything" (a global extension role).
--
-- (0.2.0 work in progress: tenants replace these stubs; see README.)
------------------------------------------------------------------------
CREATE FUNCTION apikey_usage._visible_workspaces() RETURNS text[]
	LANGUAGE sql STABLE PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp
	AS $$ SELECT NULL::text[] $$;
COMMENT ON FUNCTION apikey_usage._visible_workspaces() IS
	'Internal: the workspaces the calling role may see, or NULL for all.';

CREATE FUNCTION apikey_usage._visible_key_ids() RETURNS uuid[]
	LANGUAGE sql STABLE PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp
	AS $$ SELECT NULL::uuid[] $$;
COMMENT ON FUNCTION apikey_usage._visible_key_ids() IS
	'Internal: the key ids (live and deleted) the calling role may see, or NULL for all.';
