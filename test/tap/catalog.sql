-- One line per property of every object of the installed extension, by
-- name (no OIDs), sorted: what test/tap/ops_upgrade.pl compares between an
-- installation updated from 0.1.0 and a fresh one.  Functions with their
-- definitions, options, ACLs and comments; tables, views, sequences and
-- indexes with their columns, constraints, triggers, policies, ACLs and
-- comments; types; the schema; pg_dump configuration (extconfig).
WITH ext AS (
	SELECT oid, extconfig, extcondition FROM pg_extension WHERE extname = 'apikey_usage'
), members AS (
	SELECT d.classid, d.objid FROM pg_depend d, ext
	 WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
), funcs AS (
	SELECT p.oid, p.oid::regprocedure::text AS sig FROM pg_proc p
	 WHERE p.oid IN (SELECT objid FROM members WHERE classid = 'pg_proc'::regclass)
), rels AS (
	SELECT c.oid, c.oid::regclass::text AS name, c.relkind FROM pg_class c
	 WHERE c.oid IN (SELECT objid FROM members WHERE classid = 'pg_class'::regclass)
	UNION
	-- indexes of member tables (indexes are not members themselves)
	SELECT i.indexrelid, i.indexrelid::regclass::text, 'i' FROM pg_index i
	 WHERE i.indrelid IN (SELECT objid FROM members WHERE classid = 'pg_class'::regclass)
), lines AS (
	SELECT 'function ' || sig || ' def ' || pg_get_functiondef(oid) FROM funcs
	 WHERE (SELECT prokind FROM pg_proc WHERE pg_proc.oid = funcs.oid) <> 'a'
	UNION ALL
	SELECT 'function ' || sig || ' acl ' || coalesce((SELECT string_agg(a::text, ',' ORDER BY a::text)
		FROM pg_proc p, unnest(p.proacl) a WHERE p.oid = funcs.oid), '<default>') FROM funcs
	UNION ALL
	SELECT 'function ' || sig || ' comment ' || coalesce(obj_description(oid, 'pg_proc'), '<none>') FROM funcs
	UNION ALL
	SELECT 'function ' || sig || ' props ' || concat_ws(' ', p.prokind, p.provolatile, p.proparallel,
		p.prosecdef, p.proleakproof, p.proisstrict, p.proretset, p.procost, p.prorows,
		p.proowner::regrole::text, array_to_string(p.proconfig, ';'))
	  FROM funcs JOIN pg_proc p USING (oid)
	UNION ALL
	SELECT format('relation %s kind %s owner %s persistence %s options %s rls %s %s partkey %s',
		name, rels.relkind, c.relowner::regrole, c.relpersistence, array_to_string(c.reloptions, ','),
		c.relrowsecurity, c.relforcerowsecurity, pg_get_partkeydef(c.oid))
	  FROM rels JOIN pg_class c USING (oid)
	UNION ALL
	SELECT 'relation ' || name || ' acl ' || coalesce((SELECT string_agg(a::text, ',' ORDER BY a::text)
		FROM pg_class c, unnest(c.relacl) a WHERE c.oid = rels.oid), '<default>') FROM rels
	UNION ALL
	SELECT 'relation ' || name || ' comment ' || coalesce(obj_description(oid, 'pg_class'), '<none>') FROM rels
	UNION ALL
	SELECT format('relation %s column %s %s %s notnull %s collation %s default %s identity %s generated %s comment %s acl %s',
		name, lpad(a.attnum::text, 3, '0'), a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
		(SELECT collname FROM pg_collation WHERE oid = a.attcollation), pg_get_expr(ad.adbin, ad.adrelid),
		a.attidentity, a.attgenerated, coalesce(col_description(a.attrelid, a.attnum), '<none>'),
		array_to_string(a.attacl, ','))
	  FROM rels JOIN pg_attribute a ON a.attrelid = rels.oid
	  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
	 WHERE a.attnum > 0 AND NOT a.attisdropped
	UNION ALL
	SELECT 'relation ' || name || ' view ' || pg_get_viewdef(oid) FROM rels WHERE rels.relkind IN ('v', 'm')
	UNION ALL
	SELECT 'relation ' || name || ' index ' || pg_get_indexdef(oid) FROM rels WHERE rels.relkind IN ('i', 'I')
	UNION ALL
	SELECT 'relation ' || name || ' constraint ' || co.conname || ' ' || pg_get_constraintdef(co.oid)
	  FROM rels JOIN pg_constraint co ON co.conrelid = rels.oid
	UNION ALL
	SELECT 'relation ' || name || ' trigger ' || pg_get_triggerdef(t.oid)
	  FROM rels JOIN pg_trigger t ON t.tgrelid = rels.oid WHERE NOT t.tgisinternal
	UNION ALL
	SELECT format('relation %s policy %s %s %s %s %s %s', name, pol.polname, pol.polcmd, pol.polpermissive,
		pg_get_expr(pol.polqual, pol.polrelid), pg_get_expr(pol.polwithcheck, pol.polrelid),
		array_to_string(ARRAY(SELECT r::regrole::text FROM unnest(pol.polroles) r ORDER BY 1), ','))
	  FROM rels JOIN pg_policy pol ON pol.polrelid = rels.oid
	UNION ALL
	SELECT 'relation ' || name || ' rule ' || pg_get_ruledef(r.oid)
	  FROM rels JOIN pg_rewrite r ON r.ev_class = rels.oid WHERE r.rulename <> '_RETURN'
	UNION ALL
	SELECT 'sequence ' || s.seqrelid::regclass::text || ' ' || concat_ws(' ', format_type(s.seqtypid, NULL),
		s.seqstart, s.seqincrement, s.seqmax, s.seqmin, s.seqcache, s.seqcycle)
	  FROM pg_sequence s WHERE s.seqrelid IN (SELECT oid FROM rels)
	UNION ALL
	SELECT format('type %s %s comment %s acl %s', t.oid::regtype, t.typtype,
		coalesce(obj_description(t.oid, 'pg_type'), '<none>'), array_to_string(t.typacl, ','))
	  FROM pg_type t WHERE t.oid IN (SELECT objid FROM members WHERE classid = 'pg_type'::regclass)
	UNION ALL
	SELECT 'member ' || pg_describe_object(classid, objid, 0) FROM members
	UNION ALL
	SELECT 'schema apikey_usage acl ' || coalesce((SELECT string_agg(a::text, ',' ORDER BY a::text)
		FROM pg_namespace n, unnest(n.nspacl) a WHERE n.nspname = 'apikey_usage'), '<default>')
	UNION ALL
	SELECT 'schema apikey_usage comment ' || coalesce(obj_description(n.oid, 'pg_namespace'), '<none>')
	  FROM pg_namespace n WHERE n.nspname = 'apikey_usage'
	UNION ALL
	SELECT 'dump config ' || c::regclass::text || ' where ' || coalesce(w, '')
	  FROM ext, unnest(ext.extconfig, ext.extcondition) AS u(c, w)
	UNION ALL
	SELECT format('default privileges %s %s %s', pg_get_userbyid(d.defaclrole), d.defaclobjtype,
		array_to_string(d.defaclacl, ','))
	  FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace WHERE n.nspname = 'apikey_usage'
)
SELECT replace(line, E'\n', '\n') FROM lines AS l(line) ORDER BY 1;
