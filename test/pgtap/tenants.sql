-- Workspaces as tenants: grant_workspace / revoke_workspace, the views
-- and key management as a tenant, and the hostile cases (SET ROLE,
-- membership chains, a role named like a workspace, SECURITY DEFINER).
-- Keys are committed first (the request path sees committed keys only).
CREATE TEMP TABLE tk AS
SELECT 'acme' AS ws, g.* FROM apikey_usage.generate_key('tn-acme', 'Zapier Integration') g
UNION ALL
SELECT 'globex', g.* FROM apikey_usage.generate_key('tn-globex', 'Zapier Integration') g;
GRANT SELECT ON tk TO PUBLIC;

BEGIN;
SELECT plan(41);

CREATE ROLE tn_acme LOGIN;
CREATE ROLE tn_acme_admin LOGIN;
CREATE ROLE tn_staff NOLOGIN;			-- a group granted a workspace
CREATE ROLE tn_member LOGIN IN ROLE tn_staff;
CREATE ROLE "tn-globex" LOGIN;			-- named like the other workspace
CREATE ROLE tn_nobody LOGIN;
CREATE ROLE tn_reader LOGIN IN ROLE apikey_usage_reader;

-- bad input
SELECT throws_ok($$SELECT apikey_usage.grant_workspace('tn_acme', 'tn-acme', 'owner')$$, '22023', NULL, 'unknown access is 22023');
SELECT throws_ok($$SELECT apikey_usage.grant_workspace('tn_acme', '', 'reader')$$, '22023', NULL, 'empty workspace is 22023');
SELECT throws_ok($$SELECT apikey_usage.grant_workspace(NULL, 'tn-acme')$$, '22004', NULL, 'NULL role is 22004');
SELECT throws_ok($$SELECT apikey_usage.grant_workspace('apikey_usage_tenant', 'tn-acme')$$, '22023', NULL, 'the tenant group itself gets no grant');
SELECT is((SELECT count(*) FROM apikey_usage.workspace_grants), 0::bigint, 'bad input changed nothing');

SELECT lives_ok($$SELECT apikey_usage.grant_workspace('tn_acme', 'tn-acme')$$, 'grant reader');
SELECT lives_ok($$SELECT apikey_usage.grant_workspace('tn_acme_admin', 'tn-acme', 'admin')$$, 'grant admin');
SELECT lives_ok($$SELECT apikey_usage.grant_workspace('tn_staff', 'tn-acme')$$, 'grant to a group');
SELECT ok(pg_has_role('tn_acme', 'apikey_usage_tenant', 'USAGE') AND NOT pg_has_role('tn_acme', 'apikey_usage_tenant_admin', 'USAGE'),
	'a reader grant makes the role a tenant, not a tenant admin');
SELECT ok(pg_has_role('tn_acme_admin', 'apikey_usage_tenant_admin', 'USAGE'), 'an admin grant makes it a tenant admin');

-- reader tenant
SET ROLE tn_acme;
SELECT is(ARRAY(SELECT workspace FROM apikey_usage.keys WHERE workspace LIKE 'tn-%'), ARRAY['tn-acme'], 'tenant sees only its keys');
SELECT is((SELECT count(*) FROM apikey_usage.keys WHERE workspace = 'tn-globex'), 0::bigint, 'not even when asking for the other workspace');
SELECT is(apikey_usage._visible_workspaces(), ARRAY['tn-acme'], '_visible_workspaces: its workspace');
SELECT is(apikey_usage._visible_key_ids(), ARRAY(SELECT key_id FROM tk WHERE ws = 'acme'), '_visible_key_ids: its keys');
SELECT throws_ok($$SELECT * FROM apikey_usage.generate_key('tn-acme', 'x')$$, '42501', NULL, 'a reader tenant cannot generate keys');
SELECT throws_ok($$SELECT apikey_usage.grant_workspace('tn_acme', 'tn-globex')$$, '42501', NULL, 'a tenant cannot grant workspaces');
SELECT throws_ok($$SELECT * FROM apikey_usage.workspace_grants$$, '42501', NULL, 'a tenant cannot read the grants');
SELECT is((SELECT count(*) FROM apikey_usage._visible_last_used() WHERE key_id = (SELECT key_id FROM tk WHERE ws = 'globex')), 0::bigint,
	'the live last-used list hides other workspaces');
RESET ROLE;

-- a role named like the other workspace has no grant: sees nothing
SET ROLE "tn-globex";
SELECT throws_ok($$SELECT * FROM apikey_usage.keys$$, '42501', NULL, 'a role named like a workspace is nobody');
RESET ROLE;

-- membership chain: a member of a granted group sees the group's workspaces
SET ROLE tn_member;
SELECT is(ARRAY(SELECT workspace FROM apikey_usage.keys WHERE workspace LIKE 'tn-%'), ARRAY['tn-acme'], 'a member of a granted group sees its workspace');
RESET ROLE;

-- admin tenant: its workspace only, 42501 elsewhere and for unknown ids
SET ROLE tn_acme_admin;
SELECT lives_ok($$SELECT * FROM apikey_usage.generate_key('tn-acme', 'New')$$, 'tenant admin generates a key in its workspace');
SELECT throws_ok($$SELECT * FROM apikey_usage.generate_key('tn-globex', 'x')$$, '42501', NULL, 'and not in another');
SELECT ok(apikey_usage.copy_key((SELECT key_id FROM tk WHERE ws = 'acme')) = (SELECT api_key FROM tk WHERE ws = 'acme'), 'copies its key');
SELECT throws_ok($$SELECT apikey_usage.copy_key((SELECT key_id FROM tk WHERE ws = 'globex'))$$, '42501', NULL, 'copy_key elsewhere is 42501');
SELECT throws_ok($$SELECT apikey_usage.rename_key((SELECT key_id FROM tk WHERE ws = 'globex'), 'pwned')$$, '42501', NULL, 'rename_key elsewhere is 42501');
SELECT throws_ok($$SELECT apikey_usage.set_rate_limit((SELECT key_id FROM tk WHERE ws = 'globex'), 1)$$, '42501', NULL, 'set_rate_limit elsewhere is 42501');
SELECT throws_ok($$SELECT apikey_usage.delete_key((SELECT key_id FROM tk WHERE ws = 'globex'))$$, '42501', NULL, 'delete_key elsewhere is 42501');
SELECT throws_ok($$SELECT apikey_usage.delete_key(gen_random_uuid())$$, '42501', NULL, 'an unknown key id answers the same 42501');
SELECT ok(apikey_usage.roll_key((SELECT key_id FROM tk WHERE ws = 'acme'), '1 hour') LIKE 'ak\_%', 'tenant admin rolls its own key');
SELECT ok(apikey_usage.drop_alert_rule(apikey_usage.create_alert_rule('tn-acme', 'failed', 5)), 'tenant admin creates and drops a rule of its workspace');
SELECT throws_ok($$SELECT apikey_usage.drop_alert_rule(-1)$$, '42501', NULL, 'a missing rule answers a tenant 42501 (no existence leak)');
RESET ROLE;
SELECT is((SELECT name FROM apikey_usage.keys WHERE key_id = (SELECT key_id FROM tk WHERE ws = 'globex')), 'Zapier Integration', 'the other key is untouched');

-- a superuser who SET ROLEs to a tenant is that tenant
SET ROLE tn_acme;
SELECT is((SELECT count(*) FROM apikey_usage.keys WHERE workspace = 'tn-globex'), 0::bigint, 'SET ROLE to a tenant restricts even a superuser session');
RESET ROLE;

-- the visibility functions cache their answer per role, command and
-- snapshot: a grant or revoke shows at the next statement
SELECT apikey_usage.grant_workspace('tn_acme', 'tn-globex');
SET ROLE tn_acme;
SELECT is(apikey_usage._visible_workspaces(), ARRAY['tn-acme', 'tn-globex'], 'a new grant shows at the next statement');
RESET ROLE;
SELECT is(apikey_usage._visible_workspaces(), NULL, 'the superuser again sees everything');
SELECT apikey_usage.revoke_workspace('tn_acme', 'tn-globex');
SET ROLE tn_acme;
SELECT is(apikey_usage._visible_workspaces(), ARRAY['tn-acme'], 'a revoke shows at the next statement');
SELECT is((SELECT count(*) FROM apikey_usage.keys WHERE workspace = 'tn-globex'), 0::bigint, 'and the views follow');
RESET ROLE;

-- global roles behave as before; a role with no grant sees nothing
SET ROLE tn_reader;
SELECT is((SELECT count(*) FROM apikey_usage.keys WHERE workspace LIKE 'tn-%'), 3::bigint, 'a global reader sees every workspace');
RESET ROLE;

-- revoke: the grant goes, and with the last one the tenant membership
SELECT apikey_usage.revoke_workspace('tn_acme', 'tn-acme');
SELECT ok(NOT pg_has_role('tn_acme', 'apikey_usage_tenant', 'MEMBER'), 'revoking the last grant ends the tenant membership');
-- a grant whose role left apikey_usage_tenant (e.g. by a DBA) counts for nothing
SELECT apikey_usage.grant_workspace('tn_acme', 'tn-acme');
REVOKE apikey_usage_tenant FROM tn_acme;
GRANT apikey_usage_tenant TO tn_nobody;
GRANT tn_acme TO tn_nobody;
SET ROLE tn_nobody;
SELECT is((SELECT count(*) FROM apikey_usage.keys), 0::bigint, 'a grant to a role outside apikey_usage_tenant shows nothing');
RESET ROLE;
SELECT is((SELECT count(*) FROM apikey_usage.workspace_grants WHERE role = 'tn_acme'::regrole), 1::bigint, 'grant rows are per role oid');

SELECT * FROM finish();
ROLLBACK;

DO $$ BEGIN PERFORM apikey_usage.delete_key(key_id) FROM tk; END $$;
