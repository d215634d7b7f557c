# Helpers shared by the multi-server tests in test/tap/ (PostgreSQL's own
# TAP framework, PostgreSQL::Test::Cluster).  Run them with
# test/run_tap.sh, which sets PATH, PG_REGRESS and the include paths.
package AkuTest;

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Exporter 'import';
use File::Copy ();

our @EXPORT = qw(aku_node aku_wait_worker aku_sqlstate aku_fix_secret_mode);

# A preloaded node with database apikey (and the extension unless
# no_extension => 1).  streaming => 1 allows standbys; conf => more lines;
# secret_from => a file to use as the server secret from the first start.
sub aku_node
{
	my ($name, %p) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => $p{streaming} // 0);
	$node->append_conf('postgresql.conf', qq(
shared_preload_libraries = 'apikey_usage'
apikey_usage.database = 'apikey'
max_connections = 20
) . ($p{streaming} ? "max_wal_senders = 4\n" : '') . ($p{conf} // ''));
	if ($p{secret_from})
	{
		File::Copy::copy($p{secret_from}, $node->data_dir . '/apikey_usage.secret')
		  or die "copy secret: $!";
		chmod 0600, $node->data_dir . '/apikey_usage.secret';
	}
	$node->start;
	$node->safe_psql('postgres', 'CREATE DATABASE apikey');
	unless ($p{no_extension})
	{
		$node->safe_psql('apikey', 'CREATE EXTENSION apikey_usage');
		aku_wait_worker($node);
	}
	return $node;
}

sub aku_wait_worker
{
	my ($node) = @_;
	$node->poll_query_until('apikey',
		'SELECT worker_pid IS NOT NULL FROM apikey_usage.runtime_stats')
	  or die "the background worker of " . $node->name . " did not start";
}

# Run sql; return the SQLSTATE it fails with ('' when it succeeds).
sub aku_sqlstate
{
	my ($node, $sql) = @_;
	my ($stdout, $stderr);
	$node->psql('apikey', "\\set VERBOSITY verbose\n$sql",
		stdout => \$stdout, stderr => \$stderr);
	return $stderr =~ /ERROR:\s+([0-9A-Z]{5}):/ ? $1 : '';
}

# A data directory copied file by file (RecursiveCopy) loses file modes;
# the server refuses a secret file that others may read, as it should.
sub aku_fix_secret_mode
{
	my ($node) = @_;
	my $secret = $node->data_dir . '/apikey_usage.secret';
	chmod 0600, $secret if -e $secret;
}

1;
