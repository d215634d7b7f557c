------------------------------------------------------------------------
-- Visibility: workspaces as tenants.  The one definition of "what the
-- calling role may see"; every view and analytics function filters
-- through _visible_workspaces() / _visible_key_ids() (NULL = everything),
-- and key management checks _check_workspace_admin / _check_key_admin.
--
-- The caller is the session's outer role (login or SET ROLE; see
-- src/tenants/caller.c), never current_user, which is the owner inside
-- SECURITY DEFINER functions.  Global roles see everything: superusers,
-- the extension owner, and roles with the privileges of
-- apikey_usage_reader, _admin or _app.  Any other role sees exactly the
-- workspaces granted (grant_workspace) to a role whose privileges it has,
-- provided that role is still a member of apikey_usage_tenant; nothing
-- otherwise.
------------------------------------------------------------------------
DO $roles$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'apikey_usage_tenant') THEN
		CREATE ROLE apikey_usage_tenant NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'apikey_usage_tenant_admin') THEN
		CREATE ROLE apikey_usage_tenant_admin NOLOGIN;
	END IF;
END
$roles$;
GRANT USAGE ON SCHEMA apikey_usage TO apikey_usage_tenant, apikey_usage_tenant_admin;

-- Workspace grants, by role oid (a role renamed keeps its grants; a role
-- named like a workspace means nothing).  Not readable by anyone but the
-- owner; grant_workspace / revoke_workspace maintain it.
CREATE TABLE apikey_usage.workspace_grants (
	role			oid NOT NULL,
	workspace		text NOT NULL,
	access			text NOT NULL CHECK (access IN ('reader', 'admin')),
	granted_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (role, workspace)
);
COMMENT ON TABLE apikey_usage.workspace_grants IS
	'Workspaces granted to roles (grant_workspace): reader sees the workspace, admin also manages its keys.';

CREATE FUNCTION apikey_usage._caller() RETURNS oid
	LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'apikey_usage_caller';
COMMENT ON FUNCTION apikey_usage._caller() IS
	'Internal: the role the session acts as (login or SET ROLE), also inside SECURITY DEFINER functions.';

-- true when the caller sees everything (access = 'any') or may manage
-- every workspace's keys (access = 'admin').
CREATE FUNCTION apikey_usage._caller_is_global(access text DEFAULT 'any') RETURNS boolean
	LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	RETURN (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) apikey_usage._caller())
		OR apikey_usage._caller() OPERATOR(pg_catalog.=)
		   (SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'apikey_usage')
		OR pg_catalog.pg_has_role(apikey_usage._caller(), 'apikey_usage_admin', 'USAGE')
		OR (access OPERATOR(pg_catalog.=) 'any'
			AND (pg_catalog.pg_has_role(apikey_usage._caller(), 'apikey_usage_reader', 'USAGE')
				 OR pg_catalog.pg_has_role(apikey_usage._caller(), 'apikey_usage_app', 'USAGE')));
COMMENT ON FUNCTION apikey_usage._caller_is_global(text) IS
	'Internal: whether the caller holds a global extension role (any) or may manage every workspace (admin).';

-- The workspaces granted to the caller with at least the given access
-- (ignores global roles).
CREATE FUNCTION apikey_usage._granted_workspaces(access text DEFAULT 'reader') RETURNS text[]
	LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	RETURN ARRAY(
		SELECT DISTINCT g.workspace
		  FROM apikey_usage.workspace_grants g
		  JOIN pg_catalog.pg_auth_members m
			ON m.member OPERATOR(pg_catalog.=) g.role
		   AND m.roleid OPERATOR(pg_catalog.=) (SELECT r.oid FROM pg_catalog.pg_roles r
												  WHERE r.rolname OPERATOR(pg_catalog.=) 'apikey_usage_tenant')
		 WHERE (access OPERATOR(pg_catalog.=) 'reader' OR g.access OPERATOR(pg_catalog.=) 'admin')
		   AND pg_catalog.pg_has_role(apikey_usage._caller(), g.role, 'USAGE')
		 ORDER BY 1);
COMMENT ON FUNCTION apikey_usage._granted_workspaces(text) IS
	'Internal: the workspaces granted to the caller (through any role whose privileges it has) with at least the given access.';

-- The uncached definitions; _visible_workspaces() / _visible_key_ids()
-- (C, src/tenants/caller.c) cache their answer per role, transaction,
-- command and snapshot, so that callers may use them once per row.
CREATE FUNCTION apikey_usage._visible_workspaces_uncached() RETURNS text[]
	LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	RETURN CASE WHEN apikey_usage._caller_is_global() THEN NULL::text[]
				ELSE apikey_usage._granted_workspaces() END;
COMMENT ON FUNCTION apikey_usage._visible_workspaces_uncached() IS
	'Internal: the workspaces the calling role may see, or NULL for all (computed; use _visible_workspaces()).';

CREATE FUNCTION apikey_usage._visible_key_ids_uncached() RETURNS uuid[]
	LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	RETURN CASE WHEN apikey_usage._caller_is_global() THEN NULL::uuid[]
				ELSE ARRAY(SELECT k.key_id FROM apikey_usage.api_keys k
							WHERE k.workspace OPERATOR(pg_catalog.=) ANY (apikey_usage._granted_workspaces())
							ORDER BY 1) END;
COMMENT ON FUNCTION apikey_usage._visible_key_ids_uncached() IS
	'Internal: the key ids (live and deleted) the calling role may see, or NULL for all (computed; use _visible_key_ids()).';

CREATE FUNCTION apikey_usage._visible_workspaces() RETURNS text[]
	LANGUAGE c STABLE PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'apikey_usage_visible_workspaces';
COMMENT ON FUNCTION apikey_usage._visible_workspaces() IS
	'Internal: the workspaces the calling role may see, or NULL for all.';

CREATE FUNCTION apikey_usage._visible_key_ids() RETURNS uuid[]
	LANGUAGE c STABLE PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'apikey_usage_visible_key_ids';
COMMENT ON FUNCTION apikey_usage._visible_key_ids() IS
	'Internal: the key ids (live and deleted) the calling role may see, or NULL for all.';

-- The live last_used_at values of the keys the caller may see (the keys
-- view joins it; _cache_last_used itself lists every cached key).
CREATE FUNCTION apikey_usage._visible_last_used(OUT key_id uuid, OUT last_used_at timestamptz)
	RETURNS SETOF record
	LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	BEGIN ATOMIC
		SELECT c.key_id, c.last_used_at
		  FROM apikey_usage._cache_last_used() c
		 WHERE (SELECT apikey_usage._visible_key_ids()) IS NULL
			OR c.key_id OPERATOR(pg_catalog.=) ANY ((SELECT apikey_usage._visible_key_ids())::uuid[]);
	END;
COMMENT ON FUNCTION apikey_usage._visible_last_used() IS
	'Internal: last_used_at from the shared-memory cache of the keys the caller may see.';

-- Key management: raise 42501 unless the caller may manage the keys of
-- this workspace (global admin, or an admin grant for it).
CREATE FUNCTION apikey_usage._check_workspace_admin(workspace text) RETURNS void
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF apikey_usage._caller_is_global('admin')
		OR workspace OPERATOR(pg_catalog.=) ANY (apikey_usage._granted_workspaces('admin')) THEN
		RETURN;
	END IF;
	RAISE EXCEPTION 'permission denied for workspace %', workspace USING ERRCODE = '42501';
END
$$;
COMMENT ON FUNCTION apikey_usage._check_workspace_admin(text) IS
	'Internal: 42501 unless the caller may manage the keys of the workspace.';

-- The same for a key id.  A tenant gets 42501 alike for a key of another
-- workspace and for a key id that does not exist, so that existence does
-- not leak; global admins keep the 22023 of an unknown key.
CREATE FUNCTION apikey_usage._check_key_admin(key_id uuid) RETURNS void
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF apikey_usage._caller_is_global('admin') THEN
		RETURN;
	END IF;
	IF NOT EXISTS (SELECT FROM apikey_usage.api_keys k
					WHERE k.key_id OPERATOR(pg_catalog.=) _check_key_admin.key_id
					  AND k.workspace OPERATOR(pg_catalog.=) ANY (apikey_usage._granted_workspaces('admin'))) THEN
		RAISE EXCEPTION 'permission denied for API key %', key_id
			USING ERRCODE = '42501',
				  HINT = 'The key is not in a workspace granted to you with admin access.';
	END IF;
END
$$;
COMMENT ON FUNCTION apikey_usage._check_key_admin(uuid) IS
	'Internal: 42501 unless the caller may manage the key (unknown keys alike for tenants).';

CREATE FUNCTION apikey_usage._is_direct_member(member oid, group_name text) RETURNS boolean
	LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	RETURN EXISTS (SELECT FROM pg_catalog.pg_auth_members m
					 JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) m.roleid
					WHERE m.member OPERATOR(pg_catalog.=) _is_direct_member.member
					  AND r.rolname OPERATOR(pg_catalog.=) group_name);
COMMENT ON FUNCTION apikey_usage._is_direct_member(oid, text) IS
	'Internal: whether a role was granted membership in the named role directly.';

CREATE FUNCTION apikey_usage.grant_workspace(role regrole, workspace text, access text DEFAULT 'reader')
	RETURNS void
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	role_name	text;
BEGIN
	IF NOT apikey_usage._caller_is_global('admin') THEN
		RAISE EXCEPTION 'permission denied: only a global apikey_usage_admin may grant workspaces'
			USING ERRCODE = '42501';
	END IF;
	IF role IS NULL OR workspace IS NULL OR access IS NULL THEN
		RAISE EXCEPTION 'role, workspace and access must not be NULL' USING ERRCODE = '22004';
	END IF;
	IF pg_catalog.octet_length(workspace) NOT BETWEEN 1 AND 200 THEN
		RAISE EXCEPTION 'workspace must be 1 to 200 bytes long' USING ERRCODE = '22023';
	END IF;
	IF access NOT IN ('reader', 'admin') THEN
		RAISE EXCEPTION 'access must be reader or admin' USING ERRCODE = '22023';
	END IF;
	SELECT r.rolname INTO role_name FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) role;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'role % does not exist', role::oid USING ERRCODE = '22023';
	END IF;
	IF role_name IN ('apikey_usage_tenant', 'apikey_usage_tenant_admin') THEN
		RAISE EXCEPTION 'workspaces are granted to tenant roles, not to %', role_name
			USING ERRCODE = '22023';
	END IF;
	INSERT INTO apikey_usage.workspace_grants AS g (role, workspace, access)
	VALUES (grant_workspace.role, grant_workspace.workspace, grant_workspace.access)
	ON CONFLICT ON CONSTRAINT workspace_grants_pkey
	DO UPDATE SET access = excluded.access, granted_at = excluded.granted_at;
	-- the privileges a tenant needs to use the views and functions
	IF NOT apikey_usage._is_direct_member(role, 'apikey_usage_tenant') THEN
		EXECUTE pg_catalog.format('GRANT apikey_usage_tenant TO %I', role_name);
	END IF;
	IF access = 'admin' AND NOT apikey_usage._is_direct_member(role, 'apikey_usage_tenant_admin') THEN
		EXECUTE pg_catalog.format('GRANT apikey_usage_tenant_admin TO %I', role_name);
	ELSIF access = 'reader'
		AND NOT EXISTS (SELECT FROM apikey_usage.workspace_grants g
						 WHERE g.role OPERATOR(pg_catalog.=) grant_workspace.role
						   AND g.access OPERATOR(pg_catalog.=) 'admin')
		AND apikey_usage._is_direct_member(role, 'apikey_usage_tenant_admin') THEN
		EXECUTE pg_catalog.format('REVOKE apikey_usage_tenant_admin FROM %I', role_name);
	END IF;
END
$$;
COMMENT ON FUNCTION apikey_usage.grant_workspace(regrole, text, text) IS
	'Let a role see a workspace (reader) or also manage its keys (admin); makes it a member of apikey_usage_tenant (and _tenant_admin). Global admins only.';

CREATE FUNCTION apikey_usage.revoke_workspace(role regrole, workspace text) RETURNS void
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	role_name	text;
BEGIN
	IF NOT apikey_usage._caller_is_global('admin') THEN
		RAISE EXCEPTION 'permission denied: only a global apikey_usage_admin may revoke workspaces'
			USING ERRCODE = '42501';
	END IF;
	IF role IS NULL OR workspace IS NULL THEN
		RAISE EXCEPTION 'role and workspace must not be NULL' USING ERRCODE = '22004';
	END IF;
	DELETE FROM apikey_usage.workspace_grants g
	 WHERE g.role OPERATOR(pg_catalog.=) revoke_workspace.role
	   AND g.workspace OPERATOR(pg_catalog.=) revoke_workspace.workspace;
	SELECT r.rolname INTO role_name FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) role;
	IF NOT FOUND THEN
		RETURN;
	END IF;
	IF NOT EXISTS (SELECT FROM apikey_usage.workspace_grants g
					WHERE g.role OPERATOR(pg_catalog.=) revoke_workspace.role
					  AND g.access OPERATOR(pg_catalog.=) 'admin')
		AND apikey_usage._is_direct_member(role, 'apikey_usage_tenant_admin') THEN
		EXECUTE pg_catalog.format('REVOKE apikey_usage_tenant_admin FROM %I', role_name);
	END IF;
	IF NOT EXISTS (SELECT FROM apikey_usage.workspace_grants g
					WHERE g.role OPERATOR(pg_catalog.=) revoke_workspace.role)
		AND apikey_usage._is_direct_member(role, 'apikey_usage_tenant') THEN
		EXECUTE pg_catalog.format('REVOKE apikey_usage_tenant FROM %I', role_name);
	END IF;
END
$$;
COMMENT ON FUNCTION apikey_usage.revoke_workspace(regrole, text) IS
	'Take a workspace grant back (no error when there is none); a role left without grants leaves apikey_usage_tenant. Global admins only.';
