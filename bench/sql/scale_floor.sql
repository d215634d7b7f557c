-- Key-scale floor: fetch one of :nkeys key strings (the lookup both
-- verify scenarios below also pay).
\set i random(1, :nkeys)
SELECT api_key FROM bench.keys WHERE i = :i;
