/*-------------------------------------------------------------------------
 *
 * ratelimit.c
 *		The generic cell rate algorithm (GCRA), in integer nanoseconds.
 *
 * A key with limit n per window W gets emission interval T = ceil(W / n)
 * and tolerance tau = (n - 1) * T.  A request at now is allowed when
 * max(TAT, now) - now <= tau, and then TAT = max(TAT, now) + T.  Rounding
 * T up keeps the bound of API.md exact: k requests allowed in an interval
 * of length L satisfy (k - n) * T <= L, so k <= n + floor(L * n / W).
 *
 * Pure arithmetic; the caller holds the key's spinlock around gcra_step.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "apikey_usage.h"

#define NS_PER_US INT64CONST(1000)

void
gcra_params(int32 rate_limit, int64 rate_window_us, GcraParams *params)
{
	int64		window_ns = rate_window_us * NS_PER_US;

	Assert(rate_limit > 0);
	params->emission_interval_ns = (window_ns + rate_limit - 1) / rate_limit;
	if (params->emission_interval_ns < 1)
		params->emission_interval_ns = 1;
	params->tolerance_ns = (int64) (rate_limit - 1) * params->emission_interval_ns;
}

/* floor division for a possibly negative numerator, positive divisor */
static inline int64
floor_div(int64 numerator, int64 divisor)
{
	int64		q = numerator / divisor;

	if ((numerator % divisor) != 0 && numerator < 0)
		q--;
	return q;
}

/*
 * One request at now_ns against the state *tat_ns.  Updates the state
 * only when the request is allowed.  reset_after_ns is the time until the
 * full burst is available again (TAT - now after this step, 0 when full):
 * the "t=" of an IETF RateLimit header.
 */
void
gcra_step(const GcraParams *params, int64 *tat_ns, int64 now_ns,
		  LimitDecision *decision)
{
	int64		tat = Max(*tat_ns, now_ns);
	int64		T = params->emission_interval_ns;
	int64		tau = params->tolerance_ns;

	if (tat - now_ns <= tau)
	{
		tat += T;
		*tat_ns = tat;
		decision->allowed = true;
		decision->remaining = floor_div(tau - (tat - now_ns), T) + 1;
		if (decision->remaining < 0)
			decision->remaining = 0;
		/* when the next request would be allowed (0: right now) */
		decision->retry_after_ns = Max(0, tat - tau - now_ns);
	}
	else
	{
		decision->allowed = false;
		decision->remaining = 0;
		decision->retry_after_ns = tat - tau - now_ns;
	}
	/* the bucket is full again once the state has caught up with now */
	decision->reset_after_ns = Max(0, *tat_ns - now_ns);
}
