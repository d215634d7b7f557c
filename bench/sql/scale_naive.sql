-- Naive verify of one of :nkeys keys: sha256 + unique-index lookup.
\set i random(1, :nkeys)
SELECT n.key_id FROM bench.keys b JOIN naive.keys n ON n.key_hash = sha256(convert_to(b.api_key, 'UTF8')) WHERE b.i = :i;
