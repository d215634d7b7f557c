# Sourced by shell tests: check DESCRIPTION COMMAND... runs the command
# and prints "ok - DESCRIPTION" or "not ok - DESCRIPTION"; a failure sets
# fail=1, which the test returns at its end (exit $fail).
fail=0
check() {
	local what=$1; shift
	if "$@"; then echo "ok - $what"; else echo "not ok - $what"; fail=1; fi
}
