'use strict';
/*
 * make bench, "served request through a real driver": the cost of one
 * served request as a Node application pays it with node-postgres (pg),
 * each statement a bind-parameter query on a pooled connection, the way
 * examples/gateway does it.  Scenarios, interleaved (A B C A B C ...):
 *
 *   pair      check_request, then log_request with its request_id
 *   noop_pair two no-op statements of the same shape (same parameters,
 *             same result columns), so the difference is the extension
 *   batched   check_request, and log_requests once per BATCH requests of
 *             each client (the example gateway's LOG_BATCH)
 *
 * Environment: PG* (libpq's), KEY (an unlimited api key), KEY_ID, DURATION
 * per run (5), CLIENTS ("2 8"), REPS (2), BATCH (50).  Prints one TSV line
 * per run: scenario clients repeat served_per_s us_per_served p50_us.
 * Needs examples/gateway's node_modules (npm ci there).
 */
const path = require('path');
const { Client } = require(path.join(__dirname, '..', 'examples', 'gateway', 'node_modules', 'pg'));

const key = process.env.KEY;
const keyId = process.env.KEY_ID;
const seconds = Number(process.env.DURATION || 5);
const clientCounts = (process.env.CLIENTS || '2 8').split(/\s+/).filter(Boolean).map(Number);
const reps = Number(process.env.REPS || 2);
const batch = Number(process.env.BATCH || 50);

const CHECK = 'SELECT * FROM apikey_usage.check_request($1, $2, $3, $4)';
const LOG = 'SELECT apikey_usage.log_request($1, $2, $3, $4, $5, $6)';
const LOGS = 'SELECT apikey_usage.log_requests($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[], $6::uuid[])';
/* check_request's eleven columns and log_request's one uuid, from nothing */
const NOOP_CHECK = `SELECT $1::text IS NOT NULL AS allowed, NULL::uuid AS key_id, $2::text AS workspace,
	NULL::integer AS response_code, NULL::integer AS rate_limit, NULL::integer AS remaining,
	0 AS retry_after_ms, $3::text::uuid AS request_id, NULL::interval AS rate_window,
	$4::text AS reason, 0 AS reset_after_ms`;
const NOOP_LOG = 'SELECT $6::uuid WHERE $1::uuid IS NOT NULL AND $2::text IS NOT NULL AND $3::text IS NOT NULL AND $4::int IS NOT NULL AND $5::text IS NULL';
const FAKE_ID = '01a22700-0000-7000-8000-000000000000';

async function flushPending(c) {
	const rows = c.pending;
	c.pending = [];
	await c.query(LOGS, [rows.map((x) => x.key_id), rows.map(() => 'GET'),
		rows.map(() => '/v1/bench/{id}'), rows.map(() => 200), rows.map(() => null),
		rows.map((x) => x.request_id)]);
}

const scenarios = {
	async pair(c) {
		const r = await c.query(CHECK, [key, 'GET', '/v1/bench/{id}', null]);
		const row = r.rows[0];
		await c.query(LOG, [row.key_id, 'GET', '/v1/bench/{id}', 200, null, row.request_id]);
	},
	async noop_pair(c) {
		const r = await c.query(NOOP_CHECK, [key, 'GET', FAKE_ID, 'valid']);
		await c.query(NOOP_LOG, [keyId, 'GET', '/v1/bench/{id}', 200, null, r.rows[0].request_id]);
	},
	async batched(c) {
		const r = await c.query(CHECK, [key, 'GET', '/v1/bench/{id}', null]);
		c.pending.push(r.rows[0]);
		if (c.pending.length >= batch)
			await flushPending(c);
	},
};

async function run(name, clients) {
	const conns = [];
	for (let i = 0; i < clients; i++) {
		const c = new Client();
		await c.connect();
		c.pending = [];
		conns.push(c);
	}
	/* warm up: plans, key cache */
	for (const c of conns)
		for (let i = 0; i < 20; i++)
			await scenarios[name](c);
	let served = 0;
	const latencies = [];
	const t0 = process.hrtime.bigint();
	const deadline = t0 + BigInt(seconds * 1e9);
	await Promise.all(conns.map(async (c) => {
		while (process.hrtime.bigint() < deadline) {
			const a = process.hrtime.bigint();
			await scenarios[name](c);
			const b = process.hrtime.bigint();
			served++;
			if (latencies.length < 200000)
				latencies.push(Number(b - a) / 1000);
		}
	}));
	const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
	for (const c of conns) {
		if (c.pending.length > 0)
			await flushPending(c);	/* not counted: the log stays whole */
		await c.end();
	}
	latencies.sort((x, y) => x - y);
	const perSecond = served / elapsed;
	return { perSecond, usPerServed: 1e6 / perSecond, p50: latencies[Math.floor(latencies.length / 2)] };
}

(async () => {
	const order = ['noop_pair', 'pair', 'batched'];
	for (let rep = 1; rep <= reps; rep++)
		for (const clients of clientCounts)
			for (const name of order) {
				const r = await run(name, clients);
				console.log([name, clients, rep, r.perSecond.toFixed(0), r.usPerServed.toFixed(1),
					r.p50.toFixed(0)].join('\t'));
			}
})().catch((err) => {
	console.error(`driver bench: ${err.stack}`);
	process.exit(1);
});
