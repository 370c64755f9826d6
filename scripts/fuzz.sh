#!/usr/bin/env bash
# Runs every fuzz target in the module for $FUZZTIME each (default 4s).
#
# A run that fails with a bare "context deadline exceeded" and writes no
# failing input is Go 1.26's fuzz-coordinator shutdown race
# (https://go.dev/issue/75804, fixed in Go 1.27), not a finding: such a target
# is run once more, and if the race strikes again its corpus is replayed
# deterministically and the run counts only if that replay passes. Any other
# failure, or any failing input written to testdata/fuzz, fails at once.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-4s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
n=0
raced=0

fuzz_once() { # pkg target
	go test -run '^$' -fuzz "^$2\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 5s "$1" >"$log" 2>&1
}

only_deadline_race() { # the log shows the coordinator race and nothing else
	grep -q 'context deadline exceeded' "$log" &&
		! grep -q -e 'Failing input written' -e 'panic:' -e '_test.go:[0-9]' "$log"
}

for pkg in $(go list ./...); do
	for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "fuzz $pkg $target ($FUZZTIME)"
		n=$((n + 1))
		fuzz_once "$pkg" "$target" && continue
		if ! only_deadline_race; then cat "$log"; exit 1; fi
		echo "  Go fuzz coordinator deadline race (go.dev/issue/75804), no failing input: running again"
		fuzz_once "$pkg" "$target" && continue
		if ! only_deadline_race; then cat "$log"; exit 1; fi
		echo "  race again: replaying $target's corpus instead"
		go test -count=1 -run "^$target\$" "$pkg" >"$log" 2>&1 || { cat "$log"; exit 1; }
		raced=$((raced + 1))
	done
done
echo "fuzz smoke: $n targets ran for $FUZZTIME each ($raced hit the coordinator race twice and passed a corpus replay)"
