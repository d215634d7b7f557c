# Issue 11: a ring that belongs to one cluster and one timeline, and hot
# standby behaviour, against real servers:
#  - a pg_basebackup standby carries a copy of the primary's ring holding
#    300 unflushed entries; the primary flushes them and 100 more; on the
#    standby verify_key, the analytics and the views work, check_request,
#    log_request and flush() raise 25006 and buffer nothing; after
#    promotion the copy is discarded with a counted LOG line: zero
#    duplicates, flush_state never decreases, new requests are written;
#  - an older ring file restored next to newer tables (same cluster, same
#    timeline) is discarded as well: zero duplicates, flush_state for the
#    ring never moves backwards.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use File::Copy;
use AkuTest;

my $primary = aku_node('primary', streaming => 1,
	conf => "apikey_usage.flush_interval = 60s\n");
my ($kid, $key) = split /\|/, $primary->safe_psql('apikey',
	"SELECT key_id, api_key FROM apikey_usage.generate_key('ops', 'standby', rate_limit => 1000)");

$primary->safe_psql('apikey',
	"SELECT apikey_usage.log_request('$kid', 'GET', '/v1/in-ring', 200) FROM generate_series(1, 300)");
is($primary->safe_psql('apikey', 'SELECT buffer_used FROM apikey_usage.runtime_stats'),
	'300', '300 entries wait in the ring when the base backup is taken');
$primary->backup('b1');
$primary->safe_psql('apikey',
	"SELECT apikey_usage.log_request('$kid', 'POST', '/v1/after-backup', 201) FROM generate_series(1, 100)");
$primary->safe_psql('apikey', 'SELECT apikey_usage.flush()');
my $old_ring = $primary->safe_psql('apikey', 'SELECT ring_id FROM apikey_usage.flush_state');
is($primary->safe_psql('apikey', "SELECT flushed_seq FROM apikey_usage.flush_state WHERE ring_id = $old_ring"),
	'400', 'the primary flushed 400 entries');

my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b1', has_streaming => 1);
aku_fix_secret_mode($standby);
$standby->start;
$primary->wait_for_catchup($standby);

# hot standby: reads work, the request path refuses with 25006
is($standby->safe_psql('apikey', "SELECT reason FROM apikey_usage.verify_key('$key')"),
	'valid', 'verify_key works on the standby');
is($standby->safe_psql('apikey', "SELECT total_requests FROM apikey_usage.usage_summary('$kid')"),
	'400', 'usage_summary works on the standby');
is($standby->safe_psql('apikey',
	"SELECT count(*) FROM apikey_usage.requests WHERE api_key_id = '$kid'"),
	'400', 'the requests view works on the standby');
is($standby->safe_psql('apikey', "SELECT count(*) FROM apikey_usage.keys"), '1',
	'the keys view works on the standby');
is($standby->safe_psql('apikey',
	"SELECT sum(requests) FROM apikey_usage.usage_by_method('$kid')"), '400',
	'usage_by_method works on the standby');
my $logged_before = $standby->safe_psql('apikey', 'SELECT entries_logged FROM apikey_usage.runtime_stats');
is(aku_sqlstate($standby, "SELECT * FROM apikey_usage.check_request('$key', 'GET', '/v1/x')"),
	'25006', 'check_request raises 25006 on the standby');
is(aku_sqlstate($standby, "SELECT * FROM apikey_usage.check_request('junk', 'GET', '/v1/x')"),
	'25006', 'check_request raises 25006 on the standby even for a malformed key');
is(aku_sqlstate($standby, "SELECT apikey_usage.log_request('$kid', 'GET', '/v1/x', 200)"),
	'25006', 'log_request raises 25006 on the standby');
is(aku_sqlstate($standby, 'SELECT apikey_usage.flush()'), '25006',
	'flush raises 25006 on the standby');
my ($rc, $out, $err) = $standby->psql('apikey', "SELECT apikey_usage.log_request('$kid', 'GET', '/v1/x', 200)");
like($err, qr/HINT:.*primary/, 'the error has a hint naming the primary');
is($standby->safe_psql('apikey', 'SELECT entries_logged FROM apikey_usage.runtime_stats'),
	$logged_before, 'nothing was buffered on the standby');

# promotion: the ring copy (300 entries the primary wrote) is discarded
$primary->stop;
$standby->promote;
aku_wait_worker($standby);
$standby->safe_psql('apikey',
	"SELECT apikey_usage.log_request('$kid', 'PUT', '/v1/promoted', 200) FROM generate_series(1, 20)");
$standby->safe_psql('apikey', 'SELECT apikey_usage.flush()');
is($standby->safe_psql('apikey',
	"SELECT count(*) || '/' || count(DISTINCT request_id) FROM apikey_usage.request_log_raw"),
	'420/420', 'after promotion: 420 rows, 420 distinct request ids (no duplicates)');
like(join("\n", grep { /apikey_usage: (discarded|skipping)/ } split /\n/, slurp_file($standby->logfile)),
	# the copy is from timeline 1 (or, if the backup caught the ring before
	# the primary's worker first stamped it, older than the tables)
	qr/discarded 300 log entries found in log buffer file "apikey_usage.ring": it (was written on timeline 1 and the server is on timeline 2|is older than the tables)/,
	'the promoted server logged how many ring entries it discarded');
is($standby->safe_psql('apikey', "SELECT flushed_seq FROM apikey_usage.flush_state WHERE ring_id = $old_ring"),
	'400', 'flush_state of the primary ring did not move backwards');
is($standby->safe_psql('apikey',
	"SELECT count(*) FROM apikey_usage.flush_state WHERE ring_id <> $old_ring"),
	'1', 'the promoted server flushes under a ring id of its own');
is($standby->safe_psql('apikey', "SELECT total_requests FROM apikey_usage.usage_summary('$kid')"),
	'420', 'analytics agree with the log after promotion');
$standby->stop;

# an older ring restored next to newer tables (same cluster and timeline)
my $node = aku_node('restore', conf => "apikey_usage.flush_interval = 60s\n");
($kid) = split /\|/, $node->safe_psql('apikey',
	"SELECT key_id FROM apikey_usage.generate_key('ops', 'older ring')");
$node->safe_psql('apikey', "SELECT apikey_usage.log_request('$kid', 'GET', '/a', 200) FROM generate_series(1, 100)");
$node->safe_psql('apikey', 'SELECT apikey_usage.flush()');
$node->safe_psql('apikey', "SELECT apikey_usage.log_request('$kid', 'GET', '/b', 200) FROM generate_series(1, 50)");
$node->stop('immediate');	# 50 entries stay in the ring
my $ring = $node->data_dir . '/apikey_usage.ring';
copy($ring, "$ring.saved") or die "copy: $!";
$node->start;
aku_wait_worker($node);
$node->safe_psql('apikey', 'SELECT apikey_usage.flush()');
is($node->safe_psql('apikey', 'SELECT count(*) FROM apikey_usage.request_log_raw'), '150',
	'the 50 entries in the ring were written after the crash');
$node->safe_psql('apikey', "SELECT apikey_usage.log_request('$kid', 'GET', '/c', 200) FROM generate_series(1, 250)");
$node->safe_psql('apikey', 'SELECT apikey_usage.flush()');
my $ring_id = $node->safe_psql('apikey', 'SELECT ring_id FROM apikey_usage.flush_state');
is($node->safe_psql('apikey', 'SELECT flushed_seq FROM apikey_usage.flush_state'), '400',
	'flush_state holds 400');
$node->stop;
copy("$ring.saved", $ring) or die "copy: $!";	# the older ring comes back
$node->start;
aku_wait_worker($node);
$node->safe_psql('apikey', "SELECT apikey_usage.log_request('$kid', 'GET', '/d', 200) FROM generate_series(1, 10)");
$node->safe_psql('apikey', 'SELECT apikey_usage.flush()');
is($node->safe_psql('apikey',
	"SELECT count(*) || '/' || count(DISTINCT request_id) FROM apikey_usage.request_log_raw"),
	'410/410', 'older ring restored: 410 rows, no duplicates, new requests written');
is($node->safe_psql('apikey', "SELECT flushed_seq FROM apikey_usage.flush_state WHERE ring_id = $ring_id"),
	'400', 'flush_state of that ring did not move backwards (400)');
like(join("\n", grep { /apikey_usage: (discarded|skipping)/ } split /\n/, slurp_file($node->logfile)),
	qr/discarded 50 log entries found in log buffer file "apikey_usage.ring": it is older than the tables/,
	'the 50 stale entries were discarded with a LOG line');
$node->stop;

done_testing();
