# Issue 11, backup and restore: pg_dump of a database with the extension
# (custom and plain formats), restored with pg_restore / psql into fresh
# preloaded clusters (one given the source's secret file, one not):
#  - the restore completes without an error (--exit-on-error, ON_ERROR_STOP);
#  - every key verifies; copy_key returns the same key with the secret
#    file restored, and 55000 "the server secret has changed" without;
#  - every log row, the rollups and the analytics equal the source's;
#  - requests logged after the restore are written and counted.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AkuTest;

my $src = aku_node('source');
my @keys;
for my $i (1 .. 5)
{
	my ($kid, $key) = split /\|/, $src->safe_psql('apikey',
		"SELECT key_id, api_key FROM apikey_usage.generate_key('ws" . ($i % 2) . "', 'key $i', rate_limit => 100000)");
	push @keys, [ $kid, $key ];
}
$src->safe_psql('apikey', "SELECT apikey_usage.delete_key('$keys[4][0]')");
$src->safe_psql('apikey', "SELECT apikey_usage.rename_key('$keys[3][0]', 'renamed')");
# three days of traffic (three day partitions), some over the limit
for my $k (@keys[0 .. 3])
{
	$src->safe_psql('apikey', qq(
		SELECT count(apikey_usage.log_request('$k->[0]', m, '/v1/items/' || (i % 5), (ARRAY[200, 201, 404, 500])[1 + i % 4],
			resource_id => 'doc-' || (i % 3), requested_at => now() - (i * 17 || ' minutes')::interval))
		FROM generate_series(1, 200) AS i, unnest(ARRAY['GET', 'POST']) AS m));
}
$src->safe_psql('apikey', 'SELECT apikey_usage.flush()');

# what must come back, over bounds fixed now (a run may cross an hour)
my $now = $src->safe_psql('apikey', 'SELECT now()');
my %checks = (
	raw => "SELECT count(*) || ' ' || count(DISTINCT request_id) || ' ' || md5(string_agg(request_id::text || requested_at || api_key_id || method || endpoint || response_code || coalesce(resource_id, '-'), ',' ORDER BY request_id)) FROM apikey_usage.request_log_raw",
	rollup => "SELECT md5(string_agg(row(h.*)::text, ',' ORDER BY row(h.*)::text)) FROM apikey_usage.usage_hourly h",
	keys => "SELECT md5(string_agg(row(k.key_id, k.workspace, k.name, k.key_prefix, k.created_at, k.expires_at, k.rate_limit, k.rate_window)::text, ',' ORDER BY k.key_id)) FROM apikey_usage.keys k",
	summary => "SELECT string_agg(row(s.*)::text, ',' ORDER BY k.key_id) FROM apikey_usage.api_keys k, apikey_usage.usage_summary(k.key_id, '$now'::timestamptz - interval '7 days', '$now'::timestamptz) s",
	by_method => "SELECT string_agg(row(s.*)::text, ',' ORDER BY 1) FROM apikey_usage.usage_by_method(NULL, '$now'::timestamptz - interval '7 days', '$now'::timestamptz) s",
	by_status => "SELECT string_agg(row(s.*)::text, ',' ORDER BY 1) FROM apikey_usage.usage_by_response_status(NULL, '$now'::timestamptz - interval '7 days', '$now'::timestamptz) s",
	top => "SELECT string_agg(row(s.*)::text, ',' ORDER BY 1) FROM apikey_usage.top_endpoints(NULL, '$now'::timestamptz - interval '7 days', '$now'::timestamptz) s",
	series => "SELECT md5(string_agg(row(s.*)::text, ',' ORDER BY 1)) FROM apikey_usage.usage_timeseries('$keys[0][0]', date_trunc('hour', '$now'::timestamptz) - interval '4 days', date_trunc('hour', '$now'::timestamptz), '1 hour') s",
	page => "SELECT md5(string_agg(row(s.*)::text, ',')) FROM apikey_usage.request_log(status => 'failed', max_rows => 100) s",
);
my %expected = map { $_ => $src->safe_psql('apikey', $checks{$_}) } keys %checks;
like($expected{raw}, qr/^1600 1600 /, 'the source holds 1600 requests');

my $dumpdir = PostgreSQL::Test::Utils::tempdir('dumps');
$src->command_ok([ 'pg_dump', '-Fc', '-f', "$dumpdir/apikey.dump", '-d', $src->connstr('apikey') ],
	'pg_dump -Fc');
$src->command_ok([ 'pg_dump', '-Fp', '-f', "$dumpdir/apikey.sql", '-d', $src->connstr('apikey') ],
	'pg_dump -Fp');
my $secret = $src->data_dir . '/apikey_usage.secret';

sub restored
{
	my ($name, $format, $with_secret) = @_;
	my $node = aku_node($name, no_extension => 1,
		$with_secret ? (secret_from => $secret) : ());
	aku_wait_worker_idle($node);
	if ($format eq 'custom')
	{
		$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('apikey'), "$dumpdir/apikey.dump" ],
			"$name: pg_restore of the custom dump completes without an error");
	}
	else
	{
		$node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('apikey'), '-f', "$dumpdir/apikey.sql" ],
			"$name: psql of the plain dump completes without an error");
	}
	aku_wait_worker($node);
	for my $check (sort keys %checks)
	{
		is($node->safe_psql('apikey', $checks{$check}), $expected{$check}, "$name: $check as before");
	}
	for my $k (@keys[0 .. 3])
	{
		is($node->safe_psql('apikey', "SELECT reason FROM apikey_usage.verify_key('$k->[1]')"),
			'valid', "$name: key verifies");
	}
	is($node->safe_psql('apikey', "SELECT valid FROM apikey_usage.verify_key('$keys[4][1]')"),
		'f', "$name: the deleted key stays deleted");
	if ($with_secret)
	{
		is($node->safe_psql('apikey', "SELECT apikey_usage.copy_key('$keys[0][0]')"), $keys[0][1],
			"$name: copy_key returns the same key (secret file restored)");
	}
	else
	{
		my ($rc, $out, $err) = $node->psql('apikey', "\\set VERBOSITY verbose\nSELECT apikey_usage.copy_key('$keys[0][0]')");
		like($err, qr/ERROR:\s+55000: the API key cannot be shown again: the server secret has changed/,
			"$name: copy_key without the secret file: 55000, the server secret has changed");
		unlike($err, qr/\Q$keys[0][1]\E/, "$name: the error does not show the key");
	}
	# traffic after the restore is written and counted
	my ($allowed) = $node->safe_psql('apikey',
		"SELECT allowed FROM apikey_usage.check_request('$keys[0][1]', 'GET', '/v1/restored')");
	is($allowed, 't', "$name: check_request after the restore");
	$node->safe_psql('apikey',
		"SELECT apikey_usage.log_request('$keys[0][0]', 'GET', '/v1/restored', 200) FROM generate_series(1, 25)");
	$node->safe_psql('apikey', 'SELECT apikey_usage.flush()');
	is($node->safe_psql('apikey', "SELECT count(*) FROM apikey_usage.request_log_raw WHERE endpoint = '/v1/restored'"),
		'25', "$name: requests logged after the restore are written");
	is($node->safe_psql('apikey', "SELECT requests FROM apikey_usage.top_endpoints('$keys[0][0]', now() - interval '1 hour', now() + interval '1 minute') WHERE endpoint = '/v1/restored'"),
		'25', "$name: and counted by the analytics");
	# the worker's maintenance runs again: partitions ahead exist
	$node->safe_psql('apikey', 'SELECT apikey_usage._maintain()');
	is($node->safe_psql('apikey', "SELECT to_regclass('apikey_usage.request_log_raw_p' || to_char(now() AT TIME ZONE 'UTC' + interval '2 days', 'YYYYMMDD')) IS NOT NULL"),
		't', "$name: partitions are created ahead again after the restore");
	$node->stop;
}

# let a fresh worker settle, so that it has had every chance to get in the way
sub aku_wait_worker_idle
{
	my ($node) = @_;
	$node->poll_query_until('apikey',
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'apikey_usage flusher'")
	  or die 'no worker';
}

restored('custom_with_secret', 'custom', 1);
restored('plain_without_secret', 'plain', 0);
$src->stop;
done_testing();
