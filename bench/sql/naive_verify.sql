-- Naive verify: sha256 of the presented key (a parameter, so it is hashed
-- on every call; once, as an InitPlan, even if the planner scans the small
-- table), then a unique-index lookup on a plain table of hashes.
SELECT key_id, workspace FROM naive.keys WHERE key_hash = (SELECT sha256(convert_to(:k, 'UTF8')));
