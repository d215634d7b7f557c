# Issue 11, upgrades: a real 0.1.0 installation (built from the released
# commit 9b1384b), filled with keys and logged requests, then the new
# library installed and the server restarted:
#  - the new library serves the old SQL objects or refuses cleanly (never
#    a crash), keeps what is logged meanwhile and says to update;
#  - ALTER EXTENSION apikey_usage UPDATE gives a catalog identical to a
#    fresh 0.2.0 installation (test/tap/catalog.sql: functions with their
#    definitions, ACLs and comments, views, tables, columns, indexes,
#    constraints, triggers, policies, grants, pg_dump configuration);
#  - the data is intact and the request path works.
# The 0.1.0 library goes into a private copy of the PostgreSQL
# installation, never into the one the other tests use.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use File::Path qw(make_path);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AkuTest;

my $src_010 = $ENV{AKU_V010_SRC};
plan skip_all => 'the sources of 0.1.0 (git commit 9b1384b) are not available'
  unless $src_010 && -f "$src_010/Makefile";

# a private installation: bin, lib, share and the server headers
my $pg_config = $ENV{PG_CONFIG} // 'pg_config';
chomp(my $bindir = `$pg_config --bindir`);
chomp(my $sharedir = `$pg_config --sharedir`);
chomp(my $incdir = `$pg_config --includedir-server`);
my $inst = PostgreSQL::Test::Utils::tempdir('inst');
my $home = "$inst/lib/postgresql/15";
make_path("$inst/lib/postgresql", "$inst/share/postgresql", "$inst/include/postgresql/15");
system_or_bail('cp', '-a', "$bindir/..", $home);
system_or_bail('cp', '-a', $sharedir, "$inst/share/postgresql/15");
system_or_bail('cp', '-a', $incdir, "$inst/include/postgresql/15/server");
my $private_config = "$home/bin/pg_config";
chomp(my $check = `$private_config --pkglibdir`);
is($check, "$home/lib", 'the private installation is relocatable');

# 0.1.0 as released
system_or_bail('make', '-s', '-C', $src_010, "PG_CONFIG=$private_config", 'with_llvm=no');
system_or_bail('make', '-s', '-C', $src_010, "PG_CONFIG=$private_config", 'with_llvm=no', 'install');
is(slurp_file("$src_010/apikey_usage--0.1.0.sql"), slurp_file("$FindBin::RealBin/../../apikey_usage--0.1.0.sql"),
	'the frozen apikey_usage--0.1.0.sql is the script 0.1.0 was released with');

my $node = PostgreSQL::Test::Cluster->new('upgraded', install_path => $home);
$node->init;
$node->append_conf('postgresql.conf', qq(
shared_preload_libraries = 'apikey_usage'
apikey_usage.database = 'apikey'
apikey_usage.flush_interval = 100
));
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE apikey');
$node->safe_psql('apikey', 'CREATE EXTENSION apikey_usage');
is($node->safe_psql('apikey', "SELECT extversion FROM pg_extension WHERE extname = 'apikey_usage'"),
	'0.1.0', 'a 0.1.0 installation');
aku_wait_worker($node);

# fill it
my @keys;
for my $i (1 .. 4)
{
	my ($kid, $key) = split /\|/, $node->safe_psql('apikey',
		"SELECT key_id, api_key FROM apikey_usage.generate_key('ws$i', 'key $i', rate_limit => 1000)");
	push @keys, [ $kid, $key ];
}
$node->safe_psql('apikey', "SELECT apikey_usage.rename_key('$keys[1][0]', 'renamed')");
$node->safe_psql('apikey', "SELECT apikey_usage.delete_key('$keys[3][0]')");
for my $k (@keys[0 .. 2])
{
	$node->safe_psql('apikey', qq(
		SELECT count(apikey_usage.log_request('$k->[0]', m, '/v1/items/' || (i % 7), 200 + (i % 3) * 100,
			requested_at => now() - (i || ' minutes')::interval))
		FROM generate_series(1, 150) AS i, unnest(ARRAY['GET', 'POST']) AS m));
	$node->safe_psql('apikey', "SELECT * FROM apikey_usage.check_request('$k->[1]', 'GET', '/v1/check')");
}
$node->safe_psql('apikey', 'SELECT apikey_usage.flush()');
my $snapshot_sql = q{
	SELECT (SELECT count(*) FROM apikey_usage.request_log_raw) || ';'
		|| (SELECT string_agg(key_id || ':' || name || ':' || workspace, ',' ORDER BY key_id) FROM apikey_usage.keys) || ';'
		|| (SELECT string_agg(api_key_id || ':' || n, ',' ORDER BY api_key_id)
			  FROM (SELECT api_key_id, count(*) AS n FROM apikey_usage.request_log_raw GROUP BY 1) c) || ';'
		|| (SELECT sum(requests) FROM apikey_usage.usage_hourly)};
my $before = $node->safe_psql('apikey', $snapshot_sql);
like($before, qr/^900;/, "900 requests logged under 0.1.0");
my @summary_before = map {
	$node->safe_psql('apikey', "SELECT row(s.*)::text FROM apikey_usage.usage_summary('$_->[0]') s")
} @keys;
$node->stop;

# the new library, the old SQL objects
system_or_bail('make', '-s', '-C', "$FindBin::RealBin/../..", "PG_CONFIG=$private_config", 'install');
$node->start;
is($node->safe_psql('apikey', "SELECT extversion FROM pg_extension WHERE extname = 'apikey_usage'"),
	'0.1.0', 'still 0.1.0 SQL after installing the new library');
is($node->safe_psql('apikey', "SELECT reason FROM apikey_usage.verify_key('$keys[0][1]')"),
	'valid', 'the new library serves verify_key of the old SQL');
# every 0.1.0 function either works or fails with an SQL error; no crash
for my $call (
	"SELECT * FROM apikey_usage.check_request('$keys[0][1]', 'GET', '/v1/between')",
	"SELECT apikey_usage.log_request('$keys[0][0]', 'GET', '/v1/between', 200)",
	"SELECT * FROM apikey_usage.usage_summary('$keys[0][0]')",
	"SELECT * FROM apikey_usage.keys",
	"SELECT * FROM apikey_usage.runtime_stats",
	"SELECT apikey_usage.copy_key('$keys[0][0]')",
	"SELECT * FROM apikey_usage.request_log(max_rows => 5)")
{
	my ($rc, $out, $err) = $node->psql('apikey', $call);
	ok($rc == 0 || ($rc == 3 && $err =~ /ERROR:/), "old SQL, new library: $call -> "
		  . ($rc == 0 ? 'works' : ($err =~ /ERROR:\s+(.*)/)[0]));
}
my ($rc, $out, $err) = $node->psql('apikey', "\\set VERBOSITY verbose\nSELECT apikey_usage.flush()");
like($err, qr/ERROR:\s+55000: .*SQL objects were not.*\n.*\n?.*HINT:\s+Run ALTER EXTENSION apikey_usage UPDATE/s,
	'flush() before the update: 55000 with a hint to run ALTER EXTENSION ... UPDATE');
ok($node->log_contains('has the SQL objects of version 0.1.0, this library is version 0.2.0'),
	'the worker says why it waits');
is($node->safe_psql('apikey', 'SELECT 1'), '1', 'the server is up');
ok(!$node->log_contains('terminated by signal'), 'no process crashed');

# update
$node->safe_psql('apikey', 'ALTER EXTENSION apikey_usage UPDATE');
is($node->safe_psql('apikey', "SELECT extversion FROM pg_extension WHERE extname = 'apikey_usage'"),
	'0.2.0', 'updated to 0.2.0');
$node->safe_psql('apikey', 'SELECT apikey_usage.flush()');
my $after = $node->safe_psql('apikey', $snapshot_sql);
my ($n_after) = $after =~ /^(\d+);/;
my ($n_before) = $before =~ /^(\d+);/;
my $between = $n_after - $n_before;
ok($between >= 0 && $between <= 2, "the entries logged between install and update are written ($between)");
is($node->safe_psql('apikey', "SELECT row(s.*)::text FROM apikey_usage.usage_summary('$keys[$_][0]', now() - interval '30 days', now() - interval '10 seconds') s"),
	$summary_before[$_], "usage_summary of key $_ unchanged by the update") for 0 .. 3;
is($node->safe_psql('apikey', "SELECT apikey_usage.copy_key('$keys[2][0]')"), $keys[2][1],
	'copy_key returns the same key after the update');
is($node->safe_psql('apikey', "SELECT valid FROM apikey_usage.verify_key('$keys[3][1]')"),
	'f', 'the key deleted under 0.1.0 stays deleted');
is($node->safe_psql('apikey', "SELECT name FROM apikey_usage.keys WHERE key_id = '$keys[1][0]'"),
	'renamed', 'the rename made under 0.1.0 is kept');
is($node->safe_psql('apikey', "SELECT allowed FROM apikey_usage.check_request('$keys[0][1]', 'GET', '/v1/after')"),
	't', 'check_request works after the update');
my $rid = $node->safe_psql('apikey', "SELECT apikey_usage.log_request('$keys[0][0]', 'GET', '/v1/after', 200)");
$node->safe_psql('apikey', 'SELECT apikey_usage.flush()');
is($node->safe_psql('apikey', "SELECT count(*) FROM apikey_usage.request_log_raw WHERE request_id = '$rid'"),
	'1', 'log_request and flush work after the update');
is($node->safe_psql('apikey', q{
	SELECT count(*) FROM pg_inherits i JOIN pg_index x ON x.indrelid = i.inhrelid
	 WHERE i.inhparent = 'apikey_usage.request_log_raw'::regclass}) % 3, 0,
	'every day partition has its three indexes');

# the catalog equals a fresh 0.2.0 installation's
my $fresh = PostgreSQL::Test::Cluster->new('fresh', install_path => $home);
$fresh->init;
$fresh->append_conf('postgresql.conf', qq(
shared_preload_libraries = 'apikey_usage'
apikey_usage.database = 'apikey'
));
$fresh->start;
$fresh->safe_psql('postgres', 'CREATE DATABASE apikey');
$fresh->safe_psql('apikey', 'CREATE EXTENSION apikey_usage');
my $catalog_sql = slurp_file("$FindBin::RealBin/catalog.sql");
my @upgraded = split /\n/, $node->safe_psql('apikey', $catalog_sql);
my @fresh = split /\n/, $fresh->safe_psql('apikey', $catalog_sql);
my %in_fresh = map { $_ => 1 } @fresh;
my %in_upgraded = map { $_ => 1 } @upgraded;
my @only_upgraded = grep { !$in_fresh{$_} } @upgraded;
my @only_fresh = grep { !$in_upgraded{$_} } @fresh;
diag("catalog lines: " . scalar(@fresh) . " fresh, " . scalar(@upgraded) . " upgraded");
ok(@fresh > 100, 'the catalog description is not empty');
is(scalar(@only_upgraded) + scalar(@only_fresh), 0,
	'the upgraded catalog is identical to a fresh 0.2.0 one')
  or diag(join("\n", (map { "only after the update: " . substr($_, 0, 400) } @only_upgraded[0 .. ($#only_upgraded < 30 ? $#only_upgraded : 30)]),
	(map { "only in a fresh install: " . substr($_, 0, 400) } @only_fresh[0 .. ($#only_fresh < 30 ? $#only_fresh : 30)])));

$node->stop;
$fresh->stop;
done_testing();
