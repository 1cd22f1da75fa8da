#!/usr/bin/env bash
# Allocations per call: sipedge (the work tree, or the commit OLD with
# --against OLD as well, one after the other) under the sipp harness's
# call scenario at a fixed rate, reading the Go runtime's counters from
# /metrics before and after the harness's steps.
#
#   bench/allocs.sh [--rate R] [--duration S] [--against OLD]
#
# Prints allocations and bytes allocated per call. sipedge listens on
# 127.0.0.1:5070 (its operations server on 127.0.0.1:18089), store.sync:
# write. For where they come from, run the same with
# GODEBUG=memprofilerate=1 and sipedge's --memprofile, then
# go tool pprof -sample_index=alloc_objects -top.
set -euo pipefail
cd "$(dirname "$0")/.."
rate=800 dur=5 against=
while [ $# -gt 0 ]; do
	case $1 in
	--rate) rate=$2; shift 2 ;;
	--duration) dur=$2; shift 2 ;;
	--against) against=$2; shift 2 ;;
	*) echo "allocs.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
out=$(mktemp -d /tmp/sipedge-allocs.XXXXXX)
echo "results in $out"
mkdir -p "$out/bin"
go build -o "$out/bin/new" ./cmd/sipedge
sides=new
if [ -n "$against" ]; then
	git worktree add -q --detach "$out/old-src" "$against"
	trap 'git worktree remove --force "$out/old-src" 2>/dev/null || true' EXIT
	(cd "$out/old-src" && go build -o "$out/bin/old" ./cmd/sipedge)
	sides="old new"
fi
metric() { curl -s 127.0.0.1:18089/metrics | awk -v m="$1" '$1 == m { print $2 }'; }
for side in $sides; do
	mkdir -p "$out/$side"
	printf 'store:\n  dir: %s/%s/data\n  sync: write\nadmin:\n  listen: 127.0.0.1:18089\n' "$out" "$side" >"$out/$side/sipedge.yaml"
	"$out/bin/$side" --listen udp:127.0.0.1:5070 --log-level warn --config "$out/$side/sipedge.yaml" >"$out/$side/sipedge.log" 2>&1 &
	pid=$!
	for _ in $(seq 50); do curl -sf 127.0.0.1:18089/healthz >/dev/null 2>&1 && break; sleep 0.1; done
	m0=$(metric go_memstats_mallocs_total) b0=$(metric go_memstats_alloc_bytes_total)
	bench/harness/run-sip-bench.sh --proxy-pid "$pid" --out "$out/$side/h" --call-rates "$rate" --bisect 0 --confirm 0 \
		--duration "$dur" 127.0.0.1:5070 call >"$out/$side/harness.txt" 2>&1 || true
	m1=$(metric go_memstats_mallocs_total) b1=$(metric go_memstats_alloc_bytes_total)
	kill "$pid"; wait "$pid" 2>/dev/null || true
	calls=$(grep -E '^step call' "$out/$side/harness.txt" | grep -oE ' ok=[0-9]+' | cut -d= -f2 | paste -sd+ | bc)
	awk -v s="$side" -v n="$calls" -v m0="$m0" -v m1="$m1" -v b0="$b0" -v b1="$b1" -v r="$rate" \
		'BEGIN { if (n > 0) printf "%-4s %d calls at %d/s: %.1f allocations and %.0f bytes per call\n", s, n, r, (m1 - m0) / n, (b1 - b0) / n; else printf "%s: no calls completed\n", s }'
done
