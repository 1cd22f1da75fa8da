#!/usr/bin/env bash
# Runs the sipp harness (bench/harness, the shared sipp scenarios and
# Kamailio config) against sipedge and against Kamailio in one run on this
# machine, and prints both results and their ratio.
#
#   bench/compare.sh [register|call|both|all] [extra harness options...]
#
# both (the default) measures REGISTER and then calls on each side: one
# invocation gives both ratios from the same run. all is the harness's own
# "all" (with Kamailio it adds the digest-auth scenarios).
#
# sipedge listens on 127.0.0.1:5070, Kamailio on 127.0.0.1:5080. Needs sipp
# (Debian sip-tester) and kamailio; run as root or with both installed.
# Results and every sipp log go to a new directory under /tmp.
set -euo pipefail
cd "$(dirname "$0")/.."
scen=${1:-both}
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

scens=$scen
[ "$scen" = both ] && scens="register call"
for sc in $scens; do
	bench/harness/run-sip-bench.sh --proxy-pid "$pid" --out "$out/sipedge-$sc" "$@" 127.0.0.1:5070 "$sc"
done | tee "$out/sipedge.txt"
kill $pid; wait $pid 2>/dev/null || true
trap - EXIT
for sc in $scens; do
	bench/harness/run-sip-bench.sh --kamailio --out "$out/kamailio-$sc" "$@" 127.0.0.1:5080 "$sc"
done | tee "$out/kamailio.txt"

steal() { grep -o 'steal_pct=[0-9.]*' "$1" | tail -1; }
for kind in register call; do
	s=$(grep -E "^$kind max_(rate|cps)=" "$out/sipedge.txt" | sed -nE 's/^[a-z]+ max_[a-z]+=([0-9]+) .*/\1/p' | head -1 || true)
	k=$(grep -E "^$kind max_(rate|cps)=" "$out/kamailio.txt" | sed -nE 's/^[a-z]+ max_[a-z]+=([0-9]+) .*/\1/p' | head -1 || true)
	[ -n "$s" ] && [ -n "$k" ] || continue
	awk -v kind="$kind" -v s="$s" -v k="$k" 'BEGIN { printf "%s: sipedge=%s kamailio=%s ratio=%.2f\n", kind, s, k, s / k }'
done | tee "$out/summary.txt"
echo "sipedge $(steal "$out/sipedge.txt") / kamailio $(steal "$out/kamailio.txt")"
