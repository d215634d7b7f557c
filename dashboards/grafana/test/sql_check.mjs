// Runs every variable and panel query of the dashboard the way Grafana's
// PostgreSQL data source would (grafana_sql.mjs), with psql as the
// read-only role of README.md, for several selections of the variables, and
// checks the shapes the panels need and the counts against the analytics
// functions and plain counts over the requests view (run as superuser).
//
//   PGHOST=... PGPORT=... PGDATABASE=... node sql_check.mjs [grafana-role]
//   (GRAFANA_DASHBOARD=file.json checks another copy of the dashboard)
//
// Needs the data of seed.sql.  Prints one "ok"/"not ok" line per check and
// exits non-zero when one failed.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ALL, calculateIntervalMs, expand, rfc3339Nano, selfTest } from './grafana_sql.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const dashboard = JSON.parse(readFileSync(process.env.GRAFANA_DASHBOARD ?? join(here, '..', 'dashboards', 'apikey_usage.json'), 'utf8'));
const GRAFANA_ROLE = process.argv[2] ?? 'grafana';
// a tenant login (grant_workspace): the one workspace it may see; the
// reference queries (as superuser) are then restricted to it
const TENANT_WORKSPACE = process.env.GRAFANA_TENANT_WORKSPACE;
const SUPERUSER = process.env.PGUSER ?? 'postgres';
// the data source's min interval (provisioning: jsonData.timeInterval)
const DATASOURCE_MIN_INTERVAL = '1m';

let passed = 0;
let failed = 0;
function check(ok, what, detail) {
	if (ok) {
		passed++;
		console.log(`ok     - ${what}`);
	} else {
		failed++;
		console.log(`not ok - ${what}`);
		if (detail !== undefined) {
			console.log(`         ${String(detail).split('\n').join('\n         ')}`);
		}
	}
	return ok;
}
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const diff = (got, want) => `got:  ${JSON.stringify(got)}\nwant: ${JSON.stringify(want)}`;

function psql(input, user) {
	const r = spawnSync('psql', ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-U', user, '-f', '-'], {
		input, encoding: 'utf8', maxBuffer: 64 << 20,
	});
	if (r.status !== 0) {
		throw new Error(`psql as ${user} failed:\n${r.stderr}\n--- SQL ---\n${input}`);
	}
	return r.stdout;
}

/*
 * Runs one query as Grafana would send it and returns its columns (name
 * and type, from psql's \gdesc of the query text itself) and rows (as JSON,
 * from the same text run as a subquery).
 */
function runQuery(sql, user = GRAFANA_ROLE) {
	const text = sql.replace(/;\s*$/, '');
	const out = psql(`${text} \\gdesc\n\\echo ----\nSELECT coalesce(json_agg(grafana_query), '[]') FROM (\n${text}\n) AS grafana_query;\n`, user);
	const [desc, rows] = out.split('----\n');
	const columns = desc.trim().split('\n').filter(Boolean).map((line) => {
		const i = line.lastIndexOf('|');
		return { name: line.slice(0, i), type: line.slice(i + 1) };
	});
	return { columns, rows: JSON.parse(rows).map((r) => columns.map((c) => r[c.name])) };
}

const rowsOf = (sql, user = SUPERUSER) => runQuery(sql, user).rows;
const lit = (s) => `'${String(s).replace(/'/g, "''")}'`;
const arr = (values, type) => `ARRAY[${values.map(lit).join(',')}]::${type}[]`;
const NUMERIC = new Set(['bigint', 'integer', 'numeric', 'smallint', 'double precision', 'real']);
const TEXT = new Set(['text', 'character varying']);

/* Resolves the variables in dashboard order for one selection. */
function resolveVariables(scenario) {
	const vars = {};
	for (const model of dashboard.templating.list) {
		const chosen = scenario.select[model.name];
		const v = { model, options: [], texts: [], value: chosen ?? (model.type === 'textbox' ? '' : ALL) };
		if (model.type === 'query') {
			const sql = expand(model.query, { vars, fromMs: scenario.fromMs, toMs: scenario.toMs });
			let columns = [];
			let rows = [];
			try {
				({ columns, rows } = runQuery(sql));
			} catch (e) {
				check(false, `${scenario.name}: variable ${model.name} runs`, e.message);
			}
			const names = columns.map((c) => c.name);
			const valueAt = names.includes('__value') ? names.indexOf('__value') : 0;
			const textAt = names.includes('__text') ? names.indexOf('__text') : valueAt;
			check(columns.length === 1 || (names.includes('__value') && names.includes('__text') && columns.length === 2),
				`${scenario.name}: variable ${model.name} returns one column or __value and __text`, JSON.stringify(columns));
			v.options = rows.map((r) => String(r[valueAt]));
			v.texts = rows.map((r) => String(r[textAt]));
		} else if (model.type === 'custom') {
			v.options = model.query.split(',').map((s) => s.trim());
			v.texts = v.options;
		}
		if (Array.isArray(v.value)) {
			const missing = v.value.filter((x) => !v.options.includes(x));
			if (!check(missing.length === 0, `${scenario.name}: chosen ${model.name} values are options`, `missing ${JSON.stringify(missing)} from ${JSON.stringify(v.options)}`)) {
				v.value = v.value.filter((x) => v.options.includes(x));
			}
		}
		vars[model.name] = v;
	}
	return vars;
}

const selected = (v) => (v.value === ALL ? v.options : v.value);
// All keys of all workspaces: every key there is, deleted or not
const everyKey = (vars) => TENANT_WORKSPACE === undefined && vars.key.value === ALL && vars.workspace.value === ALL;

/* The reference filter over apikey_usage.requests for a selection. */
function referenceWhere(scenario, vars, { logFilters }) {
	const conds = [
		`requested_at >= ${lit(scenario.from)}`,
		`requested_at < ${lit(scenario.to)}`,
	];
	if (vars.key.value !== ALL) {
		conds.push(`api_key_id = ANY (${arr(vars.key.value, 'uuid')})`);
	} else if (TENANT_WORKSPACE !== undefined && vars.workspace.value === ALL) {
		conds.push(`workspace = ${lit(TENANT_WORKSPACE)}`);
	} else if (vars.workspace.value !== ALL) {
		// the workspace's keys, deleted ones included
		conds.push(`workspace = ANY (${arr(vars.workspace.value, 'text')})`);
	}
	if (logFilters) {
		for (const [name, column, type] of [['status', 'status', 'text'], ['method', 'method', 'text'],
			['endpoint', 'endpoint', 'text'], ['response_code', 'response_code', 'integer']]) {
			if (vars[name].value !== ALL) {
				conds.push(`${column} = ANY (${arr(vars[name].value, type)})`);
			}
		}
		if (vars.resource_id.value !== '') {
			conds.push(`resource_id = ${lit(vars.resource_id.value)}`);
		}
	}
	return `FROM apikey_usage.requests WHERE ${conds.join(' AND ')}`;
}

/* Columns (name, type) of each table panel. */
const TABLE_COLUMNS = {
	'Request log': [['Request ID', 'text'], ['Timestamp', 'timestamp with time zone'], ['Method', 'text'],
		['Endpoint', 'text'], ['Status', 'text'], ['Response', 'integer']],
	'API keys': [['Description', 'text'], ['Key', 'text'], ['Workspace', 'text'], ['Last used', 'timestamp with time zone'],
		['Requests (30 days)', 'bigint'], ['Expires', 'timestamp with time zone']],
	'Unused keys': [['Description', 'text'], ['Key', 'text'], ['Workspace', 'text'], ['Created', 'timestamp with time zone'],
		['Last used', 'timestamp with time zone']],
};

/* Shape of a panel's result, as the panel type needs it. */
function checkShape(panel, result, where) {
	const { columns, rows } = result;
	const types = columns.map((c) => c.type);
	switch (panel.type) {
		case 'stat':
			return check(columns.length === 1 && NUMERIC.has(types[0]) && rows.length === 1 && typeof rows[0][0] === 'number',
				`${where}: one row with one number`, JSON.stringify(result));
		case 'piechart':
		case 'bargauge': {
			const ok = columns.length === 2 && TEXT.has(types[0]) && NUMERIC.has(types[1]) &&
				rows.every((r) => typeof r[0] === 'string' && typeof r[1] === 'number');
			check(ok, `${where}: one label and one number per row`, JSON.stringify(columns));
			for (const t of panel.transformations ?? []) {
				for (const m of t.options.mappings) {
					check(columns.some((c) => c.name === m.fieldName),
						`${where}: ${t.id} field ${m.fieldName} is a column`, JSON.stringify(columns));
				}
			}
			return ok;
		}
		case 'timeseries': {
			const times = rows.map((r) => Date.parse(r[0]));
			return check(panel.targets[0].format === 'time_series' && columns[0]?.name === 'time' &&
				columns[0].type === 'timestamp with time zone' && columns.slice(1).every((c) => NUMERIC.has(c.type)) &&
				columns.length > 1 && times.every((t, i) => i === 0 || t > times[i - 1]),
			`${where}: a time column (ascending) and numbers`, JSON.stringify(columns));
		}
		case 'table': {
			const want = TABLE_COLUMNS[panel.title];
			return check(want !== undefined && same(columns.map((c) => c.name), want.map((c) => c[0])) &&
				same(types, want.map((c) => c[1])),
			`${where}: columns ${want?.map((c) => c[0]).join(', ')}`, JSON.stringify(columns));
		}
		default:
			return check(false, `${where}: unknown panel type ${panel.type}`);
	}
}

/* Names the overrides match by name must be columns of the result. */
function checkOverrideNames(panel, result, where) {
	if (panel.transformations?.length) {
		return;		// names come from the data (rowsToFields)
	}
	for (const o of panel.fieldConfig.overrides) {
		if (o.matcher.id === 'byName') {
			check(result.columns.some((c) => c.name === o.matcher.options), `${where}: override for "${o.matcher.options}" matches a column`);
		}
	}
}

function runScenario(scenario) {
	scenario.from = rfc3339Nano(scenario.fromMs);
	scenario.to = rfc3339Nano(scenario.toMs);
	console.log(`# ${scenario.name}: [${scenario.from}, ${scenario.to})`);
	const vars = resolveVariables(scenario);
	const keys = selected(vars.key);
	const within = referenceWhere(scenario, vars, { logFilters: false });
	const range = `${lit(scenario.from)}, ${lit(scenario.to)}`;

	// the variables' options against plain queries
	const ws = selected(vars.workspace);
	const wantWorkspaces = TENANT_WORKSPACE !== undefined ? [TENANT_WORKSPACE] : rowsOf(`SELECT workspace FROM apikey_usage.keys UNION
		SELECT workspace FROM apikey_usage.requests WHERE requested_at >= ${lit(scenario.from)} AND requested_at < ${lit(scenario.to)}
		ORDER BY 1`).map((r) => r[0]);
	check(same(vars.workspace.options, wantWorkspaces), `${scenario.name}: workspace options = workspaces of live keys and of requests in range`,
		diff(vars.workspace.options, wantWorkspaces));
	const wantKeys = rowsOf(`SELECT key_id::text FROM apikey_usage.keys WHERE workspace = ANY (${arr(ws, 'text')})
		UNION SELECT api_key_id::text FROM apikey_usage.requests WHERE workspace = ANY (${arr(ws, 'text')})
		AND requested_at >= ${lit(scenario.from)} AND requested_at < ${lit(scenario.to)} ORDER BY 1`).map((r) => r[0]);
	check(same([...vars.key.options].sort(), wantKeys), `${scenario.name}: key options = live keys and keys with requests in range`, diff([...vars.key.options].sort(), wantKeys));
	for (const [name, column] of [['method', 'method'], ['endpoint', 'endpoint'], ['response_code', 'response_code::text']]) {
		const want = rowsOf(`SELECT DISTINCT ${column} ${within} ORDER BY 1`).map((r) => r[0]);
		check(same(vars[name].options, want), `${scenario.name}: ${name} options = values in range`, diff(vars[name].options, want));
	}

	// the panels
	const results = {};
	for (const panel of dashboard.panels) {
		const where = `${scenario.name}: panel "${panel.title}"`;
		const sql = expand(panel.targets[0].rawSql, {
			vars, fromMs: scenario.fromMs, toMs: scenario.toMs,
			maxDataPoints: panel.maxDataPoints ?? 1000,
			minInterval: panel.interval ?? DATASOURCE_MIN_INTERVAL,
		});
		let result;
		try {
			result = runQuery(sql);
		} catch (e) {
			check(false, `${where}: runs`, e.message);
			continue;
		}
		checkShape(panel, result, where);
		checkOverrideNames(panel, result, where);
		results[panel.title] = result.rows;
	}

	// counts: plain counts over the requests view of the selected keys
	const [total, completed, failedN, limited] = rowsOf(`SELECT count(*) AS total, count(*) FILTER (WHERE status = 'completed') AS completed,
		count(*) FILTER (WHERE status = 'failed') AS failed, count(*) FILTER (WHERE status = 'rate_limited') AS rate_limited
		${within}`)[0];
	const stats = ['Total Requests', 'Completed', 'Failed', 'Rate Limited'].map((t) => results[t]?.[0]?.[0]);
	check(same(stats, [total, completed, failedN, limited]), `${scenario.name}: stat cards = counts of the selected keys' requests`, diff(stats, [total, completed, failedN, limited]));
	const byMethod = rowsOf(`SELECT method, count(*) ${within} GROUP BY 1 ORDER BY 2 DESC, 1`);
	check(same(results['Requests by HTTP method'], byMethod), `${scenario.name}: donut by method = counts per method`, diff(results['Requests by HTTP method'], byMethod));
	const byCode = rowsOf(`SELECT response_code::text, count(*) ${within} GROUP BY response_code ORDER BY 2 DESC, 1`);
	check(same(results['Requests by response status'], byCode), `${scenario.name}: donut by response status = counts per code`, diff(results['Requests by response status'], byCode));
	const top = rowsOf(`SELECT endpoint, count(*) ${within} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10`);
	check(same(results['Top endpoints'], top), `${scenario.name}: top endpoints = 10 most requested`, diff(results['Top endpoints'], top));

	// time series: the bucket the panel asked for, every bucket present
	const panelTs = dashboard.panels.find((p) => p.type === 'timeseries');
	const intervalMs = calculateIntervalMs(scenario.fromMs, scenario.toMs, panelTs.maxDataPoints, panelTs.interval);
	const bucketMs = Math.max(intervalMs, scenario.toMs - scenario.fromMs > 2 * 86400e3 ? 3600e3 : 60e3);
	const series = results['Requests over time'] ?? [];
	const wantSeries = keys.length === 0 && !everyKey(vars) ? [] : rowsOf(`
		WITH b AS (SELECT g AS t FROM generate_series(date_bin(${lit(bucketMs + ' ms')}, ${lit(scenario.from)}::timestamptz, 'epoch'),
			${lit(scenario.to)}::timestamptz - interval '1 microsecond', ${lit(bucketMs + ' ms')}) g),
		c AS (SELECT date_bin(${lit(bucketMs + ' ms')}, requested_at, 'epoch') AS t, status ${within})
		SELECT b.t, count(c.t) FILTER (WHERE c.status = 'completed') AS completed,
			   count(c.t) FILTER (WHERE c.status = 'failed') AS failed,
			   count(c.t) FILTER (WHERE c.status = 'rate_limited') AS rate_limited
		  FROM b LEFT JOIN c ON c.t = b.t GROUP BY b.t ORDER BY b.t`);
	check(same(series, wantSeries), `${scenario.name}: time series = counts per ${bucketMs / 60000}-minute bucket, every bucket present (${wantSeries.length})`,
		diff(series.slice(0, 5), wantSeries.slice(0, 5)));

	// the request log with every filter
	const log = rowsOf(`SELECT request_id::text, requested_at, method, endpoint, status, response_code
		${referenceWhere(scenario, vars, { logFilters: true })} ORDER BY requested_at DESC, request_id DESC LIMIT 200`);
	check(same(results['Request log'], log), `${scenario.name}: request log = newest 200 matching requests (${log.length})`,
		diff((results['Request log'] ?? []).slice(0, 3), log.slice(0, 3)));

	// the key list and the unused keys of the chosen workspaces
	const wsFilter = `workspace = ANY (${arr(ws, 'text')})`;
	const keyList = rowsOf(`SELECT name, key_prefix || '…', workspace, last_used_at, requests_30d, expires_at
		FROM apikey_usage.keys WHERE ${wsFilter} ORDER BY created_at, key_id`);
	check(same(results['API keys'], keyList), `${scenario.name}: API keys = the live keys of the chosen workspaces (${keyList.length})`,
		diff(results['API keys'], keyList));
	const unused = rowsOf(`SELECT name, key_prefix || '…', workspace, created_at, last_used_at
		FROM apikey_usage.unused_keys('30 days') WHERE ${wsFilter}`);
	check(same(results['Unused keys'], unused), `${scenario.name}: unused keys = unused_keys('30 days') of the chosen workspaces (${unused.length})`,
		diff(results['Unused keys'], unused));

	// and the analytics functions with NULL key_id, where the selection is every key
	if (everyKey(vars)) {
		const summary = rowsOf(`SELECT * FROM apikey_usage.usage_summary(NULL, ${range})`)[0];
		check(same(stats, summary), `${scenario.name}: stat cards = usage_summary(NULL, from, to)`, diff(stats, summary));
		check(same(results['Requests by HTTP method'], rowsOf(`SELECT * FROM apikey_usage.usage_by_method(NULL, ${range})`)),
			`${scenario.name}: donut by method = usage_by_method(NULL, from, to)`);
		check(same(results['Requests by response status'], rowsOf(`SELECT response_code::text, requests FROM apikey_usage.usage_by_response_status(NULL, ${range})`)),
			`${scenario.name}: donut by status = usage_by_response_status(NULL, from, to)`);
		check(same(results['Top endpoints'], rowsOf(`SELECT * FROM apikey_usage.top_endpoints(NULL, ${range}, 10)`)),
			`${scenario.name}: top endpoints = top_endpoints(NULL, from, to, 10)`);
		check(same(series, rowsOf(`SELECT bucket_start, completed, failed, rate_limited FROM apikey_usage.usage_timeseries(NULL, ${range}, ${lit(bucketMs + ' ms')})`)),
			`${scenario.name}: time series = usage_timeseries(NULL, from, to, bucket)`);
		const logFilters = ['status', 'method', 'endpoint', 'response_code'].filter((n) => vars[n].value !== ALL);
		if (logFilters.length === 0 && vars.resource_id.value === '') {
			check(same(results['Request log'], rowsOf(`SELECT request_id::text, requested_at, method, endpoint, status, response_code
				FROM apikey_usage.request_log(NULL, NULL, ${range}, max_rows => 200)`)),
			`${scenario.name}: request log = request_log(NULL, NULL, from, to, max_rows => 200)`);
		}
	}
	return { vars, results, total };
}

selfTest();
console.log('ok     - grafana_sql.mjs reproduces Grafana\'s formats and macros (self-test)');
passed++;

if (TENANT_WORKSPACE !== undefined) {
	// the same dashboard for a tenant login: only its workspace, everywhere
	const nowT = Date.now();
	const t = runScenario({ name: `tenant ${GRAFANA_ROLE} (workspace ${TENANT_WORKSPACE}), All, last 3 days`,
		fromMs: nowT - 3 * 86400e3, toMs: nowT, select: {} });
	check(t.total > 0 && (t.results['API keys'] ?? []).every((r) => r[2] === TENANT_WORKSPACE) &&
		(t.results['API keys'] ?? []).length > 0,
	`tenant: its traffic is there and the key list shows only ${TENANT_WORKSPACE}`);
	console.log(`\n${passed} passed, ${failed} failed`);
	process.exit(failed ? 1 : 0);
}

const keyOf = (name) => rowsOf(`SELECT DISTINCT api_key_id::text FROM apikey_usage.requests WHERE key_name = ${lit(name)}`)[0][0];
const now = Date.now();
const day = 86400e3;
const all = runScenario({ name: 'All, last 3 days', fromMs: now - 3 * day, toMs: now, select: {} });
const oldKey = keyOf('Old Key');
check(all.vars.key.options.includes(oldKey) && all.vars.key.texts[all.vars.key.options.indexOf(oldKey)] === 'Old Key (deleted)',
	'All, last 3 days: the deleted key is listed as "Old Key (deleted)"');
check(all.total > 0 && all.results['Request log']?.length === 200, 'All, last 3 days: the seeded traffic is there (and more than one page of the log)');

check(same(all.results['Unused keys']?.map((r) => r[0]), ['Legacy Webhook']), 'All, last 3 days: the key made 40 days ago and never used is unused');

const acme = runScenario({ name: 'workspace acme', fromMs: now - 3 * day, toMs: now, select: { workspace: ['acme'] } });
check(acme.vars.key.options.length === 3, 'workspace acme: two live keys and the deleted one', JSON.stringify(acme.vars.key.texts));

const quoted = runScenario({
	name: "workspace o'hara, endpoint /v1/o'brien, resource res'1", fromMs: now - 3 * day, toMs: now,
	select: { workspace: ["o'hara"], endpoint: ["/v1/o'brien"], resource_id: "res'1" },
});
check(quoted.vars.key.texts.includes("O'Hara's key") && quoted.results['Request log']?.length > 0 &&
	quoted.results['Request log'].every((r) => r[3] === "/v1/o'brien"),
'quoted values: key text, and log rows of the quoted endpoint and resource');

runScenario({
	name: 'two keys (one deleted), status failed + rate_limited, methods GET + DELETE', fromMs: now - 2.5 * day, toMs: now - 0.25 * day,
	select: { key: [keyOf('Zapier Integration'), oldKey], status: ['failed', 'rate_limited'], method: ['GET', 'DELETE'] },
});
runScenario({
	name: 'response codes 429 + 503, last 6 hours', fromMs: now - 6 * 3600e3, toMs: now,
	select: { response_code: ['429', '503'] },
});
// Grafana's interval under a minute (a panel without its min interval):
// the query still asks for buckets of at least 1 minute.
{
	const panelTs = dashboard.panels.find((p) => p.type === 'timeseries');
	const vars = resolveVariables({ name: 'short range', fromMs: now - 10 * 60e3, toMs: now, select: {} });
	const sql = expand(panelTs.targets[0].rawSql, { vars, fromMs: now - 10 * 60e3, toMs: now, maxDataPoints: 1000, minInterval: '1ms' });
	let rows = [];
	try {
		rows = runQuery(sql).rows;
	} catch (e) {
		rows = e.message;
	}
	check(Array.isArray(rows) && rows.length >= 10 && rows.length <= 11 &&
		rows.every((r, i) => i === 0 || Date.parse(r[0]) - Date.parse(rows[i - 1][0]) === 60e3),
	'10 minutes with a 600 ms interval: 1-minute buckets', JSON.stringify(rows).slice(0, 300));
}

const empty = runScenario({ name: 'a day without traffic, 60 days ago', fromMs: now - 60 * day, toMs: now - 59 * day, select: {} });
check(empty.total === 0 && !empty.vars.key.options.includes(oldKey) && empty.vars.key.options.length === 5,
	'a day without traffic: zeros, live keys only');

console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
