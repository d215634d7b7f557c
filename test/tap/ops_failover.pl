# Issue 11: failover loss, measured with a real pg_basebackup standby.
# The primary logs, is killed (immediate stop), the standby is promoted.
#  - buffered mode: every entry flushed and replicated before the kill is
#    on the promoted server, nothing twice; the entries still in the dead
#    primary's ring are the loss, printed;
#  - synchronous mode with synchronous replication: no acknowledged entry
#    is lost.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AkuTest;

sub failover
{
	my ($mode, $conf, $sync_names) = @_;
	my $primary = aku_node("p_$mode", streaming => 1, conf => $conf);
	my ($kid) = split /\|/, $primary->safe_psql('apikey',
		"SELECT key_id FROM apikey_usage.generate_key('ops', 'failover')");
	$primary->backup("b_$mode");
	my $standby = PostgreSQL::Test::Cluster->new("s_$mode");
	$standby->init_from_backup($primary, "b_$mode", has_streaming => 1);
	aku_fix_secret_mode($standby);
	$standby->start;
	if ($sync_names)
	{
		# synchronous replication from now on (not before: CREATE DATABASE
		# would wait for a standby that does not exist yet)
		$primary->append_conf('postgresql.conf', "synchronous_standby_names = '$sync_names'");
		$primary->reload;
		$primary->poll_query_until('postgres',
			"SELECT count(*) = 1 FROM pg_stat_replication WHERE sync_state = 'sync'")
		  or die "the standby did not become synchronous";
	}

	# 100 entries flushed and replicated, then 200 more; kill at once
	$primary->safe_psql('apikey',
		"SELECT apikey_usage.log_request('$kid', 'GET', '/v1/before', 200) FROM generate_series(1, 100)");
	$primary->safe_psql('apikey', 'SELECT apikey_usage.flush()');
	$primary->wait_for_catchup($standby);
	# 200 requests over about a second (one every 5 ms), then the kill
	my $acked = $primary->safe_psql('apikey', qq(
		SELECT count(apikey_usage.log_request('$kid', 'GET', '/v1/after', 200))
		FROM generate_series(1, 200) AS i, LATERAL pg_sleep(0.005 * sign(i))));
	$primary->stop('immediate');
	$standby->promote;
	aku_wait_worker($standby);
	$standby->safe_psql('apikey', 'SELECT apikey_usage.flush()');
	my ($before, $after, $rows, $distinct) = split /\|/, $standby->safe_psql('apikey', qq(
		SELECT count(*) FILTER (WHERE endpoint = '/v1/before'),
		       count(*) FILTER (WHERE endpoint = '/v1/after'),
		       count(*), count(DISTINCT request_id)
		FROM apikey_usage.request_log_raw));
	diag("failover, $mode: $acked acknowledged after the last flush, $after of them on the promoted standby, "
		  . ($acked - $after) . " lost");
	is($before, '100', "$mode: every entry flushed and replicated before the kill survives");
	is($rows, $distinct, "$mode: no entry written twice ($rows rows)");
	is($standby->safe_psql('apikey', "SELECT total_requests FROM apikey_usage.usage_summary('$kid')"),
		$rows, "$mode: analytics agree with the log on the promoted server");
	$standby->safe_psql('apikey',
		"SELECT apikey_usage.log_request('$kid', 'GET', '/v1/promoted', 200) FROM generate_series(1, 10)");
	$standby->safe_psql('apikey', 'SELECT apikey_usage.flush()');
	is($standby->safe_psql('apikey',
		"SELECT count(*) FROM apikey_usage.request_log_raw WHERE endpoint = '/v1/promoted'"),
		'10', "$mode: the promoted server logs and flushes");
	$standby->stop;
	return ($acked, $after);
}

# buffered, flush_interval 100 ms: the loss is what the dead primary had
# not flushed and replicated, about the last flush interval of traffic
my ($acked, $after) = failover('buffered', "apikey_usage.flush_interval = 100ms\n");
is($acked, '200', 'buffered: 200 acknowledged');
ok($after <= $acked, 'buffered: nothing invented');

# synchronous logging + synchronous replication: nothing acknowledged lost
($acked, $after) = failover('synchronous',
	"apikey_usage.log_mode = synchronous\n", '*');
is($acked, '200', 'synchronous: 200 acknowledged');
is($after, $acked, "synchronous: all $acked acknowledged entries survive the failover");

done_testing();
