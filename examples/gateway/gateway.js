'use strict';
/*
 * An Express middleware that puts an API behind the apikey_usage extension.
 *
 *   const { Pool } = require('pg');
 *   const { createGateway } = require('./gateway');
 *   const gateway = createGateway({ pool: new Pool(), failMode: 'closed' });
 *   app.get('/v1/documents/:id', gateway.guard('/v1/documents/{id}', 'id'), handler);
 *
 * Per request:
 *   1. the key from "Authorization: Bearer <key>" (none: a 401 all the same);
 *   2. one round trip: apikey_usage.check_request($1, $2, $3, $4) with bind
 *      parameters (the key never appears in SQL text, so never in a server
 *      log line);
 *   3. refused: 401 (WWW-Authenticate) or 429 (Retry-After), nothing more
 *      to log (check_request logged what can be logged: expired, revoked
 *      and rate-limited attempts under their key);
 *      allowed: serve, with X-Request-Id and the RateLimit headers;
 *   4. after the response has been sent: apikey_usage.log_request with the
 *      request_id check_request returned and the status code sent, or
 *      queued for one apikey_usage.log_requests call per batch.
 *
 * Every statement is one autocommit statement on any pooled connection:
 * no transaction, no session state, no named prepared statement, so it
 * works unchanged behind pgbouncer in transaction mode.
 */

/* RateLimit and RateLimit-Policy per the IETF httpapi draft (structured fields). */
function rateLimitHeaders(res, row) {
	if (row.rate_limit === null)
		return;
	const windowSeconds = Math.max(1, Math.ceil(intervalSeconds(row.rate_window)));
	res.set('RateLimit-Policy', `"default";q=${row.rate_limit};w=${windowSeconds}`);
	res.set('RateLimit', `"default";r=${row.remaining};t=${Math.ceil(row.reset_after_ms / 1000)}`);
}

/* node-postgres parses interval into an object of parts. */
function intervalSeconds(interval) {
	if (interval === null || typeof interval !== 'object')
		return 0;
	return (interval.days || 0) * 86400 + (interval.hours || 0) * 3600 +
		(interval.minutes || 0) * 60 + (interval.seconds || 0) +
		(interval.milliseconds || 0) / 1000;
}

function bearerKey(req) {
	const header = req.get('authorization');
	if (!header)
		return null;
	const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
	return match ? match[1] : '';	/* '' is answered as malformed */
}

function sleep(ms) {
	return new Promise((resolve) => setTimeout(resolve, ms));
}

/*
 * options:
 *   pool        a pg.Pool (any pooler in front is fine)
 *   failMode    'closed' (default): the database is unreachable -> 503 with
 *               Retry-After, nothing served; 'open': serve without a key
 *               check and without logging (counted in stats.unchecked)
 *   batchSize   0 (default): one log_request per served request; N > 0:
 *               queue and log with log_requests every N entries or
 *               batchMs milliseconds, whichever comes first
 *   batchMs     default 50
 *   logRetries  attempts per log call (default 5); retrying is safe because
 *               log_request / log_requests are idempotent per request_id
 *               (a retry after a lost reply adds nothing)
 */
function createGateway(options) {
	const pool = options.pool;
	const failMode = options.failMode || 'closed';
	const batchSize = options.batchSize || 0;
	const batchMs = options.batchMs || 50;
	const logRetries = options.logRetries || 5;
	const stats = {
		checked: 0, allowed: 0, refused: 0, served: 0, logged: 0, log_calls: 0, batch_calls: 0,
		log_errors: 0, log_lost: 0, db_unavailable: 0, unchecked: 0, bad_request: 0,
	};
	const inFlight = new Set();
	let queue = [];
	let timer = null;

	async function withRetries(what, fn) {
		for (let attempt = 1; ; attempt++) {
			try {
				return await fn();
			} catch (err) {
				stats.log_errors++;
				/* a bad argument will not get better: give up at once */
				if (attempt >= logRetries || (err.code && err.code.startsWith('22'))) {
					console.error(`gateway: ${what} failed for good: ${err.code || ''} ${err.message}`);
					throw err;
				}
				await sleep(50 * attempt);
			}
		}
	}

	function track(promise) {
		inFlight.add(promise);
		promise.finally(() => inFlight.delete(promise)).catch(() => {});
		return promise;
	}

	function logOne(entry) {
		return track(withRetries('log_request', () => pool.query(
			'SELECT apikey_usage.log_request($1, $2, $3, $4, $5, $6)',
			[entry.keyId, entry.method, entry.endpoint, entry.code, entry.resourceId, entry.requestId]))
			.then(() => { stats.logged++; stats.log_calls++; })
			.catch(() => { stats.log_lost++; }));
	}

	function flushQueue() {
		if (timer !== null) {
			clearTimeout(timer);
			timer = null;
		}
		if (queue.length === 0)
			return Promise.resolve();
		const batch = queue;
		queue = [];
		return track(withRetries('log_requests', () => pool.query(
			'SELECT apikey_usage.log_requests($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[], $6::uuid[])',
			[batch.map((e) => e.keyId), batch.map((e) => e.method), batch.map((e) => e.endpoint),
				batch.map((e) => e.code), batch.map((e) => e.resourceId), batch.map((e) => e.requestId)]))
			.then(() => { stats.logged += batch.length; stats.log_calls++; stats.batch_calls++; })
			.catch(() => { stats.log_lost += batch.length; }));
	}

	function log(entry) {
		if (batchSize <= 0)
			return logOne(entry);
		queue.push(entry);
		if (queue.length >= batchSize)
			return flushQueue();
		if (timer === null)
			timer = setTimeout(flushQueue, batchMs);
		return Promise.resolve();
	}

	/*
	 * The middleware for one route.  endpoint is the route as analytics
	 * should name it ("/v1/documents/{id}"), resourceParam the route
	 * parameter that names the resource (optional).
	 */
	function guard(endpoint, resourceParam) {
		return async function apikeyUsageGuard(req, res, next) {
			const key = bearerKey(req);
			const resourceId = resourceParam ? (req.params[resourceParam] ?? null) : null;
			let row;

			stats.checked++;
			try {
				const result = await pool.query(
					'SELECT * FROM apikey_usage.check_request($1, $2, $3, $4)',
					[key, req.method, endpoint, resourceId]);
				row = result.rows[0];
			} catch (err) {
				if (err.code === '22023' || err.code === '22004') {
					/* a live key and an argument the extension refuses */
					stats.bad_request++;
					res.status(400).json({ error: 'bad_request', message: err.message });
					return;
				}
				stats.db_unavailable++;
				if (failMode === 'open') {
					stats.unchecked++;
					next();
					return;
				}
				res.set('Retry-After', '1');
				res.status(503).json({ error: 'service_unavailable' });
				return;
			}

			if (row.request_id !== null)
				res.set('X-Request-Id', row.request_id);
			if (!row.allowed) {
				stats.refused++;
				if (row.response_code === 429) {
					rateLimitHeaders(res, row);
					res.set('Retry-After', String(Math.max(1, Math.ceil(row.retry_after_ms / 1000))));
					res.status(429).json({ error: 'rate_limited', retry_after_ms: row.retry_after_ms });
				} else {
					res.set('WWW-Authenticate', 'Bearer error="invalid_token"');
					res.status(row.response_code).json({ error: 'unauthorized', reason: row.reason });
				}
				return;
			}

			stats.allowed++;
			rateLimitHeaders(res, row);
			req.apiKey = { keyId: row.key_id, workspace: row.workspace, requestId: row.request_id };
			let logged = false;
			const logIt = (code) => {
				if (logged)
					return;
				logged = true;
				stats.served++;
				log({ keyId: row.key_id, method: req.method, endpoint, code,
					resourceId, requestId: row.request_id });
			};
			/* after the response is sent; 499 when the client went away first */
			res.on('finish', () => logIt(res.statusCode));
			res.on('close', () => logIt(res.writableFinished ? res.statusCode : 499));
			next();
		};
	}

	/* Wait until everything served so far is logged (shutdown). */
	async function drain() {
		await flushQueue();
		while (inFlight.size > 0)
			await Promise.allSettled([...inFlight]);
	}

	return { guard, drain, stats };
}

module.exports = { createGateway, rateLimitHeaders, intervalSeconds };
