/*
 * apikey_usage 0.1.0 -> 0.2.0 — upgrade script, assembled from the parts
 * in sqlsrc/update-0.1.0--0.2.0/ in name order (one part per subsystem).
 * Everything a part adds or changes must also be in the fresh install
 * script (the files in sqlsrc/); test/tap compares the two catalogs.
 */

\echo Use "ALTER EXTENSION apikey_usage UPDATE" to load this file. \quit
