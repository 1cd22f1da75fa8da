#!/usr/bin/env bash
# A/B benchmark of two sipedge builds in one run on this machine: the
# commit OLD (built from a temporary git worktree) and the work tree, each
# measured with the sipp harness (bench/harness) one after the other, per
# scenario: old, then new. Prints each side's result lines and the ratio
# new/old of the rate and of the CPU per 1 000.
#
#   bench/ab.sh OLD [register|call|both] [extra harness options...]
#
# Max rates:     bench/ab.sh 8bcf560 both --duration 5 --confirm 10
# Fixed rates:   bench/ab.sh 8bcf560 register --reg-rates 4000 --bisect 0 --confirm 0
#                bench/ab.sh 8bcf560 call --call-rates 800 --bisect 0 --confirm 0
#
# NEW=<commit> bench/ab.sh ... measures that commit instead of the work
# tree (built from a temporary worktree too). STORE_SYNC=write runs both
# with store.sync: write (no fsync before a REGISTER's 200).
#
# sipedge listens on 127.0.0.1:5070. Needs sipp (Debian sip-tester).
# Results and every sipp log go to a new directory under /tmp.
set -euo pipefail
cd "$(dirname "$0")/.."
old=${1:?usage: bench/ab.sh OLD [register|call|both] [harness options...]}
shift
scen=${1:-both}
shift || true
out=$(mktemp -d /tmp/sipedge-ab.XXXXXX)
echo "results in $out"
mkdir -p "$out/bin"
git worktree add -q --detach "$out/old-src" "$old"
trap 'git worktree remove --force "$out/old-src" 2>/dev/null || true; git worktree remove --force "$out/new-src" 2>/dev/null || true' EXIT
(cd "$out/old-src" && go build -o "$out/bin/old" ./cmd/sipedge)
if [ -n "${NEW:-}" ]; then
	git worktree add -q --detach "$out/new-src" "$NEW"
	(cd "$out/new-src" && go build -o "$out/bin/new" ./cmd/sipedge)
else
	go build -o "$out/bin/new" ./cmd/sipedge
fi

scens=$scen
[ "$scen" = both ] && scens="register call"
for sc in $scens; do
	for side in old new; do
		"$out/bin/$side" --listen udp:127.0.0.1:5070 --listen tcp:127.0.0.1:5070 \
			--log-level warn --config <(printf 'store:\n  dir: %s/data-%s-%s\n  sync: %s\n' "$out" "$side" "$sc" "${STORE_SYNC:-fsync}") >"$out/$side-$sc.log" 2>&1 &
		pid=$!
		sleep 1
		bench/harness/run-sip-bench.sh --proxy-pid "$pid" --out "$out/$side-$sc" "$@" 127.0.0.1:5070 "$sc" | tee -a "$out/$side.txt"
		kill -INT $pid; kill -INT $pid 2>/dev/null || true
		wait $pid 2>/dev/null || true
	done
done

field() { grep -oE "$2=[0-9.]+" <<<"$1" | head -1 | cut -d= -f2; }
for kind in register call; do
	o=$(grep -E "^$kind max_(rate|cps)=" "$out/old.txt" | head -1 || true)
	n=$(grep -E "^$kind max_(rate|cps)=" "$out/new.txt" | head -1 || true)
	[ -n "$o" ] && [ -n "$n" ] || continue
	or=$(field "$o" 'max_(rate|cps)'); nr=$(field "$n" 'max_(rate|cps)')
	oc=$(field "$o" 'proxy_cpu_s_per_1k(_calls)?'); nc=$(field "$n" 'proxy_cpu_s_per_1k(_calls)?')
	awk -v k="$kind" -v or="$or" -v nr="$nr" -v oc="$oc" -v nc="$nc" \
		'BEGIN { printf "%s: rate old=%s new=%s (new/old %.2f); cpu_s_per_1k old=%s new=%s (new/old %.2f)\n", k, or, nr, nr/or, oc, nc, (oc > 0 ? nc/oc : 0) }'
done | tee "$out/summary.txt"
grep -ho 'steal_pct=[0-9.]*' "$out/old.txt" "$out/new.txt" | tr '\n' ' '; echo
