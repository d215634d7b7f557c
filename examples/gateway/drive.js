'use strict';
/*
 * Concurrent clients for the example gateway (used by
 * test/shell/example_gateway.sh): TOTAL requests from CONCURRENCY clients
 * over the keys in KEYS_FILE (JSON: {"label": "api key" | null}, null = no
 * Authorization header), recording for every response what a client sees:
 * key label, status, X-Request-Id, route.  Writes CSV to OUT_FILE and
 * prints a summary; exits 1 when a response breaks the header contract.
 *
 *   BASE_URL=http://127.0.0.1:8080 KEYS_FILE=keys.json OUT_FILE=seen.csv node drive.js
 *
 * PAUSE_FILE (optional): once the first half of the requests has been
 * answered, create PAUSE_FILE.reached and wait for PAUSE_FILE.go before
 * sending the second half (the test changes keys in between).
 */
const fs = require('fs');

const base = process.env.BASE_URL;
const keys = JSON.parse(fs.readFileSync(process.env.KEYS_FILE, 'utf8'));
const total = Number(process.env.TOTAL || 600);
const concurrency = Number(process.env.CONCURRENCY || 6);
const paceMs = Number(process.env.PACE_MS || 0);
const labels = Object.keys(keys);
const routes = [
	['GET', '/v1/documents/doc_%d', '/v1/documents/{id}', 'doc_%d'],
	['GET', '/v1/documents/missing_%d', '/v1/documents/{id}', 'missing_%d'],
	['POST', '/v1/documents', '/v1/documents', null],
	['GET', '/v1/documents/doc_%d', '/v1/documents/{id}', 'doc_%d'],
	['DELETE', '/v1/documents/doc_%d', '/v1/documents/{id}', 'doc_%d'],
	['GET', '/v1/crash', '/v1/crash', null],
	/* a 300-byte path segment: with a bad key still a 401 */
	['GET', '/v1/documents/' + 'x'.repeat(300), '/v1/documents/{id}', 'x'.repeat(300)],
];
const pauseFile = process.env.PAUSE_FILE || '';
const pauseAt = pauseFile ? Math.floor(total / 2) : total;
const rows = [];
const problems = [];
let next = 0;
let firstHalfDone = 0;
let resumed = null;

function sleep(ms) {
	return new Promise((resolve) => setTimeout(resolve, ms));
}

/* every first-half answer in, then wait for the go-ahead (once) */
function pause() {
	if (resumed === null)
		resumed = (async () => {
			while (firstHalfDone < pauseAt)
				await sleep(5);
			fs.writeFileSync(pauseFile + '.reached', '');
			while (!fs.existsSync(pauseFile + '.go'))
				await sleep(20);
		})();
	return resumed;
}

function problem(what, label, status, headers) {
	if (problems.length < 20)
		problems.push(`${what}: key ${label}, status ${status}, headers ${JSON.stringify(headers)}`);
	else
		problems.push(what);
}

async function one(i) {
	const label = labels[i % labels.length];
	const [method, pathPattern, endpoint, resourcePattern] = routes[(i * 7 + Math.floor(i / labels.length)) % routes.length];
	const path = pathPattern.replace('%d', String(i));
	const resource = resourcePattern === null ? '' : resourcePattern.replace('%d', String(i));
	const headers = {};
	if (keys[label] !== null)
		headers.Authorization = `Bearer ${keys[label]}`;
	const res = await fetch(base + path, { method, headers });
	await res.arrayBuffer();
	const h = Object.fromEntries(res.headers);
	const requestId = h['x-request-id'] || '';
	/* the header contract of README ("Using it from an application") */
	if (res.status === 429 && !(h['retry-after'] && h['ratelimit'] && h['ratelimit-policy'] && requestId))
		problem('429 without Retry-After / RateLimit / RateLimit-Policy / X-Request-Id', label, res.status, h);
	if (res.status === 401 && !h['www-authenticate'])
		problem('401 without WWW-Authenticate', label, res.status, h);
	if (res.status < 400 && !requestId)
		problem('served without X-Request-Id', label, res.status, h);
	if (h['ratelimit'] && !/^"default";r=\d+;t=\d+$/.test(h['ratelimit']))
		problem('malformed RateLimit', label, res.status, h);
	if (h['ratelimit-policy'] && !/^"default";q=\d+;w=\d+$/.test(h['ratelimit-policy']))
		problem('malformed RateLimit-Policy', label, res.status, h);
	rows.push([label, res.status, requestId, method, endpoint, resource].join(','));
}

async function client() {
	for (;;) {
		const i = next++;
		if (i >= total)
			return;
		if (i >= pauseAt)
			await pause();
		await one(i);
		if (i < pauseAt)
			firstHalfDone++;
		if (paceMs > 0)
			await sleep(paceMs);
	}
}

(async () => {
	const t0 = Date.now();
	await Promise.all(Array.from({ length: concurrency }, client));
	fs.writeFileSync(process.env.OUT_FILE, rows.join('\n') + '\n');
	const byStatus = {};
	for (const row of rows) {
		const status = row.split(',')[1];
		byStatus[status] = (byStatus[status] || 0) + 1;
	}
	console.log(`drive: ${rows.length} responses in ${Date.now() - t0} ms from ${concurrency} clients: ${JSON.stringify(byStatus)}`);
	for (const p of problems.slice(0, 20))
		console.log(`drive: PROBLEM ${p}`);
	process.exit(problems.length === 0 ? 0 : 1);
})().catch((err) => {
	console.error(`drive: ${err.stack}`);
	process.exit(2);
});
