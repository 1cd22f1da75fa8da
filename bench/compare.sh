#!/usr/bin/env bash
# Runs the sipp harness (bench/harness, the shared sipp scenarios and
# Kamailio config) against sipedge and against Kamailio in one run on this
# machine, and prints both results and their ratio.
#
#   bench/compare.sh [register|call|all] [extra harness options...]
#
# sipedge listens on 127.0.0.1:5070, Kamailio on 127.0.0.1:5080. Needs sipp
# (Debian sip-tester) and kamailio; run as root or with both installed.
# Results and every sipp log go to a new directory under /tmp.
set -euo pipefail
cd "$(dirname "$0")/.."
scen=${1:-all}
shift || true
out=$(mktemp -d /tmp/sipedge-bench.XXXXXX)
echo "results in $out"

mkdir -p "$out/bin"
go build -o "$out/bin/sipedge" ./cmd/sipedge
"$out/bin/sipedge" --listen udp:127.0.0.1:5070 --listen tcp:127.0.0.1:5070 \
	--log-level warn --config <(printf 'store:\n  dir: %s/data\n' "$out") >"$out/sipedge.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
sleep 1

bench/harness/run-sip-bench.sh --proxy-pid "$pid" --out "$out/sipedge" "$@" 127.0.0.1:5070 "$scen" | tee "$out/sipedge.txt"
kill $pid; wait $pid 2>/dev/null || true
trap - EXIT
bench/harness/run-sip-bench.sh --kamailio --out "$out/kamailio" "$@" 127.0.0.1:5080 "$scen" | tee "$out/kamailio.txt"

steal() { grep -o 'steal_pct=[0-9.]*' "$1" | tail -1; }
for kind in register call; do
	s=$(grep -E "^$kind max_(rate|cps)=" "$out/sipedge.txt" | sed -nE 's/^[a-z]+ max_[a-z]+=([0-9]+) .*/\1/p' | head -1 || true)
	k=$(grep -E "^$kind max_(rate|cps)=" "$out/kamailio.txt" | sed -nE 's/^[a-z]+ max_[a-z]+=([0-9]+) .*/\1/p' | head -1 || true)
	[ -n "$s" ] && [ -n "$k" ] || continue
	awk -v kind="$kind" -v s="$s" -v k="$k" 'BEGIN { printf "%s: sipedge=%s kamailio=%s ratio=%.2f\n", kind, s, k, s / k }'
done | tee "$out/summary.txt"
echo "sipedge $(steal "$out/sipedge.txt") / kamailio $(steal "$out/kamailio.txt")"
