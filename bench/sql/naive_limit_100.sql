-- Naive limiter over 100 keys: a counter row per key.
\set n random(1, 100)
UPDATE naive.limits SET count = count + 1 WHERE n = :n RETURNING count;
