'use strict';
/*
 * A small API behind the gateway middleware, for trying it out and for
 * the test (test/shell/example_gateway.sh).
 *
 *   PGHOST=... PGPORT=... PGDATABASE=... PGUSER=... node server.js
 *
 * Environment: PORT (default 8080), FAIL_MODE (closed | open),
 * LOG_BATCH (0: one log_request per request; N: log_requests batches of N),
 * POOL_SIZE (default 8).  The PG* variables are libpq's, read by pg.
 * SIGTERM / SIGINT: stop accepting, log everything served, exit 0.
 */
const express = require('express');
const { Pool } = require('pg');
const { createGateway } = require('./gateway');

const pool = new Pool({
	max: Number(process.env.POOL_SIZE || 8),
	connectionTimeoutMillis: 2000,
	application_name: 'example-gateway',
});
/* an idle connection that breaks (server restart, pooler) must not crash us */
pool.on('error', (err) => console.error(`gateway: idle connection: ${err.message}`));

const gateway = createGateway({
	pool,
	failMode: process.env.FAIL_MODE || 'closed',
	batchSize: Number(process.env.LOG_BATCH || 0),
});

const app = express();
app.disable('x-powered-by');
app.use(express.json());

app.get('/v1/documents/:id', gateway.guard('/v1/documents/{id}', 'id'), (req, res) => {
	if (req.params.id.startsWith('missing'))
		return res.status(404).json({ error: 'not_found' });
	res.json({ id: req.params.id, workspace: req.apiKey ? req.apiKey.workspace : null });
});
app.post('/v1/documents', gateway.guard('/v1/documents'), (req, res) => {
	res.status(201).json({ created: true });
});
app.delete('/v1/documents/:id', gateway.guard('/v1/documents/{id}', 'id'), (req, res) => {
	res.status(204).end();
});
app.get('/v1/crash', gateway.guard('/v1/crash'), (req, res) => {
	res.status(500).json({ error: 'internal' });
});
/* the gateway's own counters (no key needed; keep it off the public port in production) */
app.get('/_gateway/stats', (req, res) => res.json(gateway.stats));

const server = app.listen(Number(process.env.PORT || 8080), '127.0.0.1', () => {
	console.log(`gateway: listening on ${server.address().port}`);
});

let stopping = false;
async function shutdown(signal) {
	if (stopping)
		return;
	stopping = true;
	console.log(`gateway: ${signal}, draining`);
	/* stop accepting; requests under way finish (and queue their logs) */
	const closed = new Promise((resolve) => server.close(resolve));
	server.closeIdleConnections?.();
	await closed;
	await gateway.drain();
	await pool.end();
	console.log(`gateway: stopped ${JSON.stringify(gateway.stats)}`);
	process.exit(0);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
