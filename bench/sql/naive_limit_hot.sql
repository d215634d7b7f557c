-- Naive limiter, hot key: every request increments the same counter row.
UPDATE naive.limits SET count = count + 1 WHERE n = 1 RETURNING count;
