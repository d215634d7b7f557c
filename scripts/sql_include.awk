# Assembles the upgrade script from its parts (sqlsrc/update-*/).  A line
#   --@include FILE LINE
# stands for the block of sqlsrc/FILE (the fresh install's source) that
# holds the one line equal to LINE: from the empty line before it to the
# empty line after it, where empty lines inside a dollar-quoted function
# body do not count.  So a function, view or table the upgrade creates
# exactly as a fresh install does is written once, in the fresh source,
# and the two scripts cannot drift apart.  Every other line is copied as
# it is.  An anchor line that is missing or not unique stops the build.
function fail(msg) {
	printf "sql_include.awk: %s:%d: %s\n", FILENAME, FNR, msg > "/dev/stderr"
	failed = 1
	exit 1
}
# the number of dollar-quote delimiters ($$, $tag$) on a line
function dollar_quotes(s,	n) {
	n = 0
	while (match(s, /\$[A-Za-z_]*\$/)) {
		n++
		s = substr(s, RSTART + RLENGTH)
	}
	return n
}
/^--@include / {
	file = $2
	anchor = substr($0, length("--@include ") + length(file) + 2)
	path = "sqlsrc/" file
	n = 0; at = 0; hits = 0; inside = 0
	while ((rc = (getline line < path)) > 0) {
		text[++n] = line
		# a block boundary: an empty line outside a function body
		boundary[n] = (line == "" && !inside)
		if (dollar_quotes(line) % 2)
			inside = !inside
		if (line == anchor) {
			hits++
			at = n
		}
	}
	close(path)
	if (rc < 0)
		fail("cannot read " path)
	if (hits != 1)
		fail("\"" anchor "\" found " hits " times in " path " (must be once)")
	for (first = at; first > 1 && !boundary[first - 1]; first--)
		;
	for (last = at; last < n && !boundary[last + 1]; last++)
		;
	for (i = first; i <= last; i++)
		print text[i]
	next
}
{ print }
END { if (failed) exit 1 }
