// Structural lints of the Grafana dashboard and its provisioning files.
//
//   node lint.mjs [dashboard.json]   exit 0 when clean, 1 with one line per problem
//
// - panel ids unique, gridPos inside the 24-column grid (x + w <= 24) and
//   panels not overlapping;
// - every data source uid used (panels, targets, variables) is provisioned
//   in provisioning/datasources/*.yaml, with the same type;
// - every variable referenced in SQL is defined, and referenced as
//   ${var:sqlstring} (the one format the dashboard's SQL is written for);
//   variables are defined before the variables that use them;
// - Grafana macros only with plain column arguments, and only known ones;
// - the dashboard provider's path is where README's docker command mounts
//   dashboards/grafana/dashboards, and that directory holds exactly this
//   dashboard (Grafana loads every *.json under the path);
// - the provisioning directory README mounts is provisioning/.
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { macroCalls, referencedVariables } from './grafana_sql.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const grafanaDir = join(here, '..');
const problems = [];
const problem = (text) => problems.push(text);

/*
 * A YAML reader for the subset the provisioning files use: block mappings
 * and block sequences of mappings, plain or quoted scalars, comments.
 * Anything else is an error, so the lint cannot silently misread a file.
 */
export function parseYaml(text, file) {
	const lines = [];
	text.split('\n').forEach((raw, i) => {
		const noComment = raw.replace(/(^|\s)#.*$/, '');
		if (noComment.trim() === '') {
			return;
		}
		if (/\t/.test(noComment.match(/^\s*/)[0])) {
			throw new Error(`${file}:${i + 1}: tab in indentation`);
		}
		lines.push({ indent: noComment.match(/^ */)[0].length, body: noComment.trim(), no: i + 1 });
	});
	const scalar = (s, no) => {
		if (/^'.*'$/.test(s)) {
			return s.slice(1, -1).replace(/''/g, "'");
		}
		if (/^".*"$/.test(s)) {
			return JSON.parse(s);
		}
		if (/^[[{|>&*!]/.test(s)) {
			throw new Error(`${file}:${no}: unsupported YAML: ${s}`);
		}
		if (s === 'true' || s === 'false') {
			return s === 'true';
		}
		if (/^-?\d+$/.test(s)) {
			return Number(s);
		}
		return s;
	};
	let pos = 0;
	const block = (indent) => {
		const first = lines[pos];
		if (first.body.startsWith('- ') || first.body === '-') {
			const list = [];
			while (pos < lines.length && lines[pos].indent === indent && lines[pos].body.startsWith('-')) {
				const line = lines[pos];
				const rest = line.body.slice(1).trimStart();
				// "- key: value" opens a mapping whose keys sit at indent + 2
				lines[pos] = { indent: indent + 2, body: rest, no: line.no };
				list.push(rest.includes(':') ? block(indent + 2) : (pos++, scalar(rest, line.no)));
			}
			return list;
		}
		const map = {};
		while (pos < lines.length && lines[pos].indent === indent && !lines[pos].body.startsWith('-')) {
			const { body, no } = lines[pos];
			const m = /^([A-Za-z_][\w.-]*):(?:\s+(.*))?$/.exec(body);
			if (!m) {
				throw new Error(`${file}:${no}: cannot read: ${body}`);
			}
			pos++;
			if (m[2] !== undefined && m[2] !== '') {
				map[m[1]] = scalar(m[2], no);
			} else if (pos < lines.length && lines[pos].indent > indent) {
				map[m[1]] = block(lines[pos].indent);
			} else if (pos < lines.length && lines[pos].indent === indent && lines[pos].body.startsWith('-')) {
				map[m[1]] = block(indent);
			} else {
				map[m[1]] = null;
			}
		}
		if (pos < lines.length && lines[pos].indent > indent) {
			throw new Error(`${file}:${lines[pos].no}: unexpected indentation`);
		}
		return map;
	};
	const doc = lines.length ? block(lines[0].indent) : {};
	if (pos !== lines.length) {
		throw new Error(`${file}:${lines[pos].no}: unexpected line`);
	}
	return doc;
}

function readYamlDir(dir) {
	return readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).map((f) => ({
		file: join(dir, f),
		doc: parseYaml(readFileSync(join(dir, f), 'utf8'), f),
	}));
}

const dashboardsDir = join(grafanaDir, 'dashboards');
const dashboardFiles = readdirSync(dashboardsDir).filter((f) => f.endsWith('.json'));
if (dashboardFiles.length !== 1 || dashboardFiles[0] !== 'apikey_usage.json') {
	problem(`dashboards/ must hold exactly apikey_usage.json, holds ${dashboardFiles.join(', ')}`);
}
const dashboard = JSON.parse(readFileSync(process.argv[2] ?? join(dashboardsDir, 'apikey_usage.json'), 'utf8'));

// data sources
const datasources = new Map();
for (const { file, doc } of readYamlDir(join(grafanaDir, 'provisioning', 'datasources'))) {
	if (doc.apiVersion !== 1) {
		problem(`${file}: apiVersion must be 1`);
	}
	for (const ds of doc.datasources ?? []) {
		if (!ds.uid || !ds.type || !ds.name) {
			problem(`${file}: data source without name, type or uid`);
			continue;
		}
		if (!['grafana-postgresql-datasource', 'postgres'].includes(ds.type)) {
			problem(`${file}: data source ${ds.uid} is of type ${ds.type}, not PostgreSQL`);
		}
		if (datasources.has(ds.uid)) {
			problem(`${file}: data source uid ${ds.uid} provisioned twice`);
		}
		datasources.set(ds.uid, ds);
	}
}
if (datasources.size === 0) {
	problem('no data source provisioned');
}
const checkRef = (ref, where) => {
	if (!ref || typeof ref !== 'object' || !ref.uid) {
		problem(`${where}: no explicit data source uid`);
		return;
	}
	const ds = datasources.get(ref.uid);
	if (!ds) {
		problem(`${where}: data source uid ${ref.uid} is not provisioned`);
	} else if (ref.type && ref.type !== ds.type &&
			   !(new Set([ref.type, ds.type]).size === 2 && [ref.type, ds.type].every((t) => ['postgres', 'grafana-postgresql-datasource'].includes(t)))) {
		problem(`${where}: data source ${ref.uid} has type ${ref.type} here, ${ds.type} in provisioning`);
	}
};

// variables
const variables = dashboard.templating?.list ?? [];
const defined = new Map();
const checkSql = (sql, where, definedSoFar) => {
	for (const { name, format } of referencedVariables(sql)) {
		if (!definedSoFar.has(name)) {
			problem(`${where}: $${name} is not a variable defined ${definedSoFar === defined ? '' : 'before it '}in the dashboard`);
		} else if (format !== 'sqlstring') {
			problem(`${where}: $${name} is used without :sqlstring`);
		}
	}
	for (const { name, args } of macroCalls(sql)) {
		const known = ['__timeFrom', '__timeTo', '__timeFilter', '__timeGroup', '__timeGroupAlias', '__time', '__timeEpoch', '__unixEpochFilter'];
		if (!known.includes(name)) {
			problem(`${where}: unknown macro $${name}()`);
		}
		if (['__timeFilter', '__time', '__timeEpoch', '__unixEpochFilter', '__timeGroup', '__timeGroupAlias'].includes(name) &&
			!/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$/.test(args[0] ?? '')) {
			problem(`${where}: $${name}() needs a plain column as its first argument, has "${args[0] ?? ''}"`);
		}
	}
};
for (const v of variables) {
	const where = `variable ${v.name}`;
	if (defined.has(v.name)) {
		problem(`${where}: defined twice`);
	}
	if (v.type === 'query') {
		checkRef(v.datasource, where);
		if (typeof v.query !== 'string' || !v.query.trim()) {
			problem(`${where}: query variable without SQL`);
		} else {
			checkSql(v.query, where, new Map(defined));
		}
	}
	if (v.includeAll && v.allValue !== undefined && v.allValue !== 'NULL') {
		problem(`${where}: the dashboard's SQL is written for allValue NULL (an unnested NULL = no filter)`);
	}
	defined.set(v.name, v);
}

// panels
const ids = new Set();
const cells = new Map();
for (const panel of dashboard.panels ?? []) {
	const where = `panel ${panel.id} (${panel.title})`;
	if (typeof panel.id !== 'number' || ids.has(panel.id)) {
		problem(`${where}: id missing or not unique`);
	}
	ids.add(panel.id);
	const g = panel.gridPos;
	if (!g || ![g.x, g.y, g.w, g.h].every(Number.isInteger) || g.x < 0 || g.y < 0 || g.w < 1 || g.h < 1 || g.x + g.w > 24) {
		problem(`${where}: gridPos ${JSON.stringify(g)} is not inside the 24-column grid`);
	} else {
		for (let x = g.x; x < g.x + g.w; x++) {
			for (let y = g.y; y < g.y + g.h; y++) {
				const other = cells.get(`${x},${y}`);
				if (other !== undefined && other !== panel.id) {
					problem(`${where}: overlaps panel ${other} at (${x}, ${y})`);
					x = g.x + g.w;
					break;
				}
				cells.set(`${x},${y}`, panel.id);
			}
		}
	}
	checkRef(panel.datasource, where);
	const refIds = new Set();
	for (const t of panel.targets ?? []) {
		checkRef(t.datasource, `${where} target ${t.refId}`);
		if (refIds.has(t.refId)) {
			problem(`${where}: refId ${t.refId} twice`);
		}
		refIds.add(t.refId);
		if (typeof t.rawSql !== 'string' || !t.rawSql.trim()) {
			problem(`${where}: target ${t.refId} has no rawSql`);
		} else {
			checkSql(t.rawSql, `${where} target ${t.refId}`, defined);
		}
	}
	if (!panel.targets?.length) {
		problem(`${where}: no query`);
	}
}

// provisioning of the dashboard and README's mounts
const readme = readFileSync(join(grafanaDir, 'README.md'), 'utf8');
const mountTarget = (source) => {
	const m = new RegExp(`-v\\s+"?\\$PWD/dashboards/grafana/${source}:([^:"\\s]+)(?::ro)?"?`).exec(readme);
	return m ? m[1] : null;
};
const provisioningMount = mountTarget('provisioning');
if (provisioningMount !== '/etc/grafana/provisioning') {
	problem(`README must mount dashboards/grafana/provisioning at /etc/grafana/provisioning (found ${provisioningMount})`);
}
const dashboardsMount = mountTarget('dashboards');
let providers = 0;
for (const { file, doc } of readYamlDir(join(grafanaDir, 'provisioning', 'dashboards'))) {
	if (doc.apiVersion !== 1) {
		problem(`${file}: apiVersion must be 1`);
	}
	for (const p of doc.providers ?? []) {
		providers++;
		if (p.type !== 'file') {
			problem(`${file}: provider ${p.name} is not of type file`);
		}
		const path = p.options?.path;
		if (!path) {
			problem(`${file}: provider ${p.name} has no options.path`);
		} else if (path !== dashboardsMount) {
			problem(`${file}: provider ${p.name} reads ${path}, but README mounts dashboards/grafana/dashboards at ${dashboardsMount}`);
		}
	}
}
if (providers === 0) {
	problem('no dashboard provider provisioned');
}

if (problems.length) {
	for (const p of problems) {
		console.log(`lint: ${p}`);
	}
	process.exit(1);
}
console.log(`lint: ok (${ids.size} panels, ${variables.length} variables, ${datasources.size} data source, ${providers} dashboard provider)`);
