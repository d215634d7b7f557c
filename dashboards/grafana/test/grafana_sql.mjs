// What Grafana does to a PostgreSQL query's rawSql before the server sees
// it, re-done here so that the dashboard's SQL can be run with psql.  Two
// stages, as in Grafana:
//
// 1. The browser (TemplateSrv.replace with the SQL data source's
//    interpolateVariable as the default format) replaces template
//    variables: $var, [[var]], [[var:fmt]], ${var}, ${var:fmt}.
//      - ${var:sqlstring}: each value single-quoted, ' doubled and " turned
//        into \" (Grafana's SQL_ESCAPE_MAP), comma-joined.
//      - no format (the data source default): a string of a multi-value or
//        include-All variable is quoted like that; of another variable it
//        has its quotes doubled but is not quoted; arrays are quoted and
//        comma-joined.
//      - All selected: the variable's custom allValue, inserted as it is
//        (Grafana skips formatting of custom all values except for the text
//        and percentencode formats); without one, every option's value.
//      - $__interval / $__interval_ms: from the time range, maxDataPoints
//        and the panel's min interval (rangeutil.calculateInterval).
//    An unknown variable is left as it is.
// 2. The backend (pkg/tsdb/grafana-postgresql-datasource, macros.go and
//    sqleng.Interpolate) replaces $__interval_ms, $__interval,
//    $__unixEpochFrom(), $__unixEpochTo(), then every `$name(args)`:
//    $__timeFrom() / $__timeTo() -> '<RFC 3339, UTC, nanosecond precision
//    without trailing zeros>', $__timeFilter(col) -> col BETWEEN '..' AND
//    '..', $__timeGroup(col, '5m') -> floor(extract(epoch from col)/300)*300
//    (AS "time" for $__timeGroupAlias), ...  Any other $name( is an error.
//
// Sources read: public/app/features/templating/template_srv.ts,
// packages/grafana-data/src/utils/... formatRegistry (sqlStringFormatter),
// public/app/features/plugins/sql/datasource/SqlDatasource.ts
// (interpolateVariable), pkg/tsdb/grafana-postgresql-datasource/macros.go,
// pkg/tsdb/sqleng/sql_engine.go, rangeutil.calculateInterval.

export const ALL = '$__all';

// TemplateSrv's variable regex (variableRegex in @grafana/data).
const VARIABLE_RE = /\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\${(\w+)(?:\.([^:^}]+))?(?::([^}]+))?}/g;

// Built-in variables the browser fills in.  Others ($__dashboard, $__user,
// ...) are not used by the dashboard and would be left unexpanded here,
// which the lint reports.
const BROWSER_BUILTINS = new Set(['__interval', '__interval_ms', '__from', '__to', '__range', '__range_s', '__range_ms']);

function sqlStringFormatter(value) {
	const escape = (v) => `'${String(v).replace(/'|"/g, (m) => (m === "'" ? "''" : '\\"'))}'`;
	return Array.isArray(value) ? value.map(escape).join(',') : escape(value);
}

function quoteLiteral(value) {
	return "'" + String(value).replace(/'/g, "''") + "'";
}

// SqlDatasource.interpolateVariable
function sqlDefaultFormat(value, variable) {
	if (typeof value === 'string') {
		if (variable.multi || variable.includeAll) {
			return quoteLiteral(value);
		}
		return value.replace(/'/g, "''");
	}
	if (typeof value === 'number') {
		return String(value);
	}
	if (Array.isArray(value)) {
		return value.map(quoteLiteral).join(',');
	}
	return value;
}

function formatValue(value, format, variable) {
	switch (format) {
		case undefined:
			return sqlDefaultFormat(value, variable);
		case 'sqlstring':
			return sqlStringFormatter(value);
		case 'raw':
			return Array.isArray(value) ? value.join(',') : String(value);
		case 'csv':
			return Array.isArray(value) ? value.join(',') : String(value);
		default:
			throw new Error(`variable format ${format} of $${variable.name} is not emulated`);
	}
}

function isAll(value) {
	return value === ALL || (Array.isArray(value) && value[0] === ALL);
}

// Grafana's rangeutil.roundInterval (browser side).
export function roundInterval(ms) {
	const table = [
		[10, 1], [15, 10], [35, 20], [75, 50], [150, 100], [350, 200], [750, 500], [1500, 1000],
		[3500, 2000], [7500, 5000], [12500, 10000], [17500, 15000], [25000, 20000], [45000, 30000],
		[90000, 60000], [210000, 120000], [450000, 300000], [750000, 600000], [1050000, 900000],
		[1500000, 1200000], [2700000, 1800000], [5400000, 3600000], [9000000, 7200000],
		[16200000, 10800000], [32400000, 21600000], [86400000, 43200000], [604800000, 86400000],
		[1814400000, 604800000], [3628800000, 2592000000],
	];
	for (const [limit, result] of table) {
		if (ms <= limit) {
			return result;
		}
	}
	return 31536000000;
}

const UNIT_MS = { ms: 1, s: 1000, m: 60000, h: 3600000, d: 86400000, w: 604800000, y: 31536000000 };

export function intervalToMs(text) {
	const m = /^(\d+)(ms|s|m|h|d|w|y)$/.exec(text);
	if (!m) {
		throw new Error(`cannot parse interval ${text}`);
	}
	return Number(m[1]) * UNIT_MS[m[2]];
}

function msToText(ms) {
	for (const unit of ['y', 'w', 'd', 'h', 'm', 's']) {
		if (ms % UNIT_MS[unit] === 0) {
			return `${ms / UNIT_MS[unit]}${unit}`;
		}
	}
	return `${ms}ms`;
}

// rangeutil.calculateInterval: range / maxDataPoints, rounded, then at
// least the panel's (or data source's, default 1m for SQL) min interval.
export function calculateIntervalMs(fromMs, toMs, maxDataPoints, minInterval) {
	let ms = roundInterval((toMs - fromMs) / maxDataPoints);
	const low = intervalToMs(minInterval ?? '1m');
	if (low > ms) {
		ms = low;
	}
	return ms;
}

// Go's time.Format(time.RFC3339Nano) of a UTC instant given in ms.
export function rfc3339Nano(ms) {
	const iso = new Date(ms).toISOString();		// 2026-11-26T06:55:12.340Z
	const [head, frac] = iso.slice(0, -1).split('.');
	const trimmed = frac.replace(/0+$/, '');
	return trimmed ? `${head}.${trimmed}Z` : `${head}Z`;
}

/*
 * Stage 1.  vars maps a variable name to { model, value, options } where
 * model is the dashboard's variable JSON, value the current value (a
 * string, an array of strings, or ALL) and options the values the
 * variable's query returned (for All without allValue).
 */
export function replaceVariables(sql, vars, builtins = {}) {
	const replaceOnce = (text) => text.replace(VARIABLE_RE, (match, var1, var2, fmt2, var3, fieldPath, fmt3) => {
		const name = var1 || var2 || var3;
		const format = fmt2 || fmt3;
		if (Object.prototype.hasOwnProperty.call(builtins, name)) {
			return formatValue(builtins[name], format, { name });
		}
		const variable = vars[name];
		if (!variable) {
			return match;
		}
		if (fieldPath) {
			throw new Error(`field paths (\${${name}.${fieldPath}}) are not emulated`);
		}
		let value = variable.value;
		if (isAll(value)) {
			if (variable.model.allValue && format !== 'text' && format !== 'percentencode') {
				return replaceOnce(variable.model.allValue);
			}
			value = variable.options;
		}
		return formatValue(value, format, variable.model);
	});
	return replaceOnce(sql);
}

// gtime.ParseInterval for the interval argument of $__timeGroup.
function parseGoInterval(text) {
	const t = text.replace(/^'|'$/g, '');
	return intervalToMs(t) / 1000;
}

/* Stage 2.  from/to are instants in ms; intervalMs as in stage 1. */
export function replaceMacros(sql, fromMs, toMs, intervalMs) {
	const from = rfc3339Nano(fromMs);
	const to = rfc3339Nano(toMs);
	let out = sql
		.replaceAll('$__interval_ms', String(intervalMs))
		.replaceAll('$__interval', msToText(intervalMs))
		.replaceAll('$__unixEpochFrom()', String(Math.floor(fromMs / 1000)))
		.replaceAll('$__unixEpochTo()', String(Math.floor(toMs / 1000)));
	const macro = /\$([_a-zA-Z0-9]+)\(([^)]*)\)/g;
	const source = out;
	out = out.replace(macro, (whole, name, rawArgs, offset) => {
		const args = rawArgs.split(',').map((a) => a.trim());
		if (name === '__timeGroup' && source[offset + whole.length] === ',') {
			name = '__timeGroupAlias';
		}
		const needColumn = () => {
			if (!args[0]) {
				throw new Error(`missing time column argument for macro ${name}`);
			}
		};
		switch (name) {
			case '__time':
				needColumn();
				return `${args[0]} AS "time"`;
			case '__timeEpoch':
				needColumn();
				return `extract(epoch from ${args[0]}) as "time"`;
			case '__timeFilter':
				needColumn();
				return `${args[0]} BETWEEN '${from}' AND '${to}'`;
			case '__timeFrom':
				return `'${from}'`;
			case '__timeTo':
				return `'${to}'`;
			case '__timeGroup':
			case '__timeGroupAlias': {
				if (args.length < 2) {
					throw new Error(`macro ${name} needs time column and interval`);
				}
				if (args.length > 2) {
					throw new Error('the fill argument of $__timeGroup is not emulated');
				}
				const secs = parseGoInterval(args[1]);
				const expr = `floor(extract(epoch from ${args[0]})/${secs})*${secs}`;
				return name === '__timeGroupAlias' ? `${expr} AS "time"` : expr;
			}
			case '__unixEpochFilter':
				needColumn();
				return `${args[0]} >= ${Math.floor(fromMs / 1000)} AND ${args[0]} <= ${Math.floor(toMs / 1000)}`;
			default:
				throw new Error(`unknown macro "${name}"`);
		}
	});
	return out;
}

/* Both stages, for one query. */
export function expand(sql, { vars, fromMs, toMs, maxDataPoints, minInterval }) {
	const intervalMs = calculateIntervalMs(fromMs, toMs, maxDataPoints ?? 1000, minInterval);
	const builtins = {
		__interval: msToText(intervalMs),
		__interval_ms: intervalMs,
		__from: fromMs,
		__to: toMs,
	};
	return replaceMacros(replaceVariables(sql, vars, builtins), fromMs, toMs, intervalMs);
}

/*
 * The variables a query refers to: [{ name, format }], built-ins and
 * macros excluded (for the lint).
 */
export function referencedVariables(sql) {
	const found = [];
	for (const m of sql.matchAll(VARIABLE_RE)) {
		const name = m[1] || m[2] || m[4];
		const format = m[3] || m[6];
		const after = sql[m.index + m[0].length];
		if (m[1] && after === '(') {
			continue;		// a macro call, $__timeFrom() and the like
		}
		if (BROWSER_BUILTINS.has(name)) {
			continue;
		}
		found.push({ name, format });
	}
	return found;
}

/* The macro calls of a query: [{ name, args }] (for the lint). */
export function macroCalls(sql) {
	return [...sql.matchAll(/\$([_a-zA-Z0-9]+)\(([^)]*)\)/g)].map((m) => ({
		name: m[1],
		args: m[2].split(',').map((a) => a.trim()).filter((a) => a !== ''),
	}));
}

/*
 * Checks of the emulation against the outputs Grafana's own unit tests
 * expect (formatRegistry.test.ts, SqlDatasource tests, macros_test.go).
 */
export function selfTest() {
	const eq = (got, want, what) => {
		if (got !== want) {
			throw new Error(`grafana_sql self-test: ${what}: got ${got}, want ${want}`);
		}
	};
	eq(sqlStringFormatter("test'value"), "'test''value'", 'sqlstring quote');
	eq(sqlStringFormatter('test"value'), `'test\\"value'`, 'sqlstring double quote');
	eq(sqlStringFormatter(['test', "test'value2"]), "'test','test''value2'", 'sqlstring array');
	eq(sqlDefaultFormat("a'b", { multi: false }), "a''b", 'default single value');
	eq(sqlDefaultFormat("a'b", { multi: true }), "'a''b'", 'default multi value');
	eq(sqlDefaultFormat(['a', "b'c"], { multi: true }), "'a','b''c'", 'default array');
	const vars = {
		m: { model: { name: 'm', multi: true, includeAll: true, allValue: 'NULL' }, value: ALL, options: ['x'] },
		k: { model: { name: 'k', multi: true, includeAll: true }, value: ALL, options: ['a', "o'b"] },
		t: { model: { name: 't', type: 'textbox' }, value: "r'1", options: [] },
	};
	eq(replaceVariables('${m:sqlstring} $m [[m]]', vars), 'NULL NULL NULL', 'custom all value');
	eq(replaceVariables('${k:sqlstring}|$k|${k}', vars), "'a','o''b'|'a','o''b'|'a','o''b'", 'all options');
	eq(replaceVariables("${t:sqlstring} '$t' $unknown", vars), "'r''1' 'r''1' $unknown", 'textbox');
	eq(rfc3339Nano(Date.UTC(2026, 10, 26)), '2026-11-26T00:00:00Z', 'RFC 3339 whole second');
	eq(rfc3339Nano(Date.UTC(2026, 10, 26, 6, 55, 12, 340)), '2026-11-26T06:55:12.34Z', 'RFC 3339 fraction');
	const from = Date.UTC(2026, 10, 26), to = from + 3600e3;
	eq(replaceMacros('WHERE $__timeFilter(t)', from, to, 60000),
		"WHERE t BETWEEN '2026-11-26T00:00:00Z' AND '2026-11-26T01:00:00Z'", '$__timeFilter');
	eq(replaceMacros('SELECT $__timeGroupAlias(t, 5m), $__timeGroup(t, \'1h\')', from, to, 60000),
		'SELECT floor(extract(epoch from t)/300)*300 AS "time", floor(extract(epoch from t)/3600)*3600', '$__timeGroup');
	eq(calculateIntervalMs(0, 7 * 86400e3, 300, '1m'), 1800000, '7 days / 300 points');
	eq(calculateIntervalMs(0, 6 * 3600e3, 300, '1m'), 60000, '6 hours / 300 points');
	let threw = false;
	try {
		replaceMacros('$__nosuch(x)', from, to, 60000);
	} catch {
		threw = true;
	}
	eq(threw, true, 'unknown macro is an error');
}
