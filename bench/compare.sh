#!/usr/bin/env bash
# Runs the sipp harness (bench/harness, the shared sipp scenarios and
# Kamailio config) against sipedge and against Kamailio in one run on this
# machine, and prints both results and their ratio.
#
#   bench/compare.sh [register|call|both|auth|all] [extra harness options...]
#
# both (the default) measures REGISTER and then calls on each side: one
# invocation gives both ratios from the same run. auth measures the
# digest-auth scenarios (register-auth, call-auth): sipedge then trusts
# nobody and challenges every REGISTER (401) and INVITE (407) against a
# users file of the harness's users, Kamailio runs with WITH_AUTH. all is
# the harness's own "all" (with Kamailio it adds the digest-auth scenarios).
#
# A fixed rate instead of the search for the maximum, e.g. 4000 REGISTER/s:
#   bench/compare.sh auth --reg-rates 4000 --call-rates 800 --bisect 0 --confirm 0
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
printf 'store:\n  dir: %s/data\n' "$out" >"$out/sipedge.yaml"
if [ "$scen" = auth ]; then
	# The harness's users (user<i>/pw<i>, callee<k>/calleepw) as a users
	# file (HA1 only); the callers write From/To as user@127.0.0.1 without
	# the port, so 127.0.0.1 is a local domain. The per-source rate limit is
	# off: every call comes from one address here.
	python3 - "$out/users" <<'PY'
import hashlib, sys
realm = "bench.example"
with open(sys.argv[1], "w") as f:
    for u, pw in [("user%d" % i, "pw%d" % i) for i in range(10000)] + [("callee%d" % k, "calleepw") for k in range(1, 501)]:
        f.write("%s %s md5:%s\n" % (u, realm, hashlib.md5(("%s:%s:%s" % (u, realm, pw)).encode()).hexdigest()))
PY
	chmod 600 "$out/users"
	printf 'domains: ["127.0.0.1"]\ntrusted_networks: []\nauth:\n  realm: bench.example\n  users_file: %s\nsecurity:\n  rate: {requests: 0}\n' \
		"$out/users" >>"$out/sipedge.yaml"
fi
"$out/bin/sipedge" --listen udp:127.0.0.1:5070 --listen tcp:127.0.0.1:5070 \
	--log-level warn --config "$out/sipedge.yaml" >"$out/sipedge.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
sleep 1

scens=$scen
[ "$scen" = both ] && scens="register call"
[ "$scen" = auth ] && scens="register-auth call-auth"
for sc in $scens; do
	bench/harness/run-sip-bench.sh --proxy-pid "$pid" --out "$out/sipedge-$sc" "$@" 127.0.0.1:5070 "$sc"
done | tee "$out/sipedge.txt"
kill $pid; wait $pid 2>/dev/null || true
trap - EXIT
for sc in $scens; do
	bench/harness/run-sip-bench.sh --kamailio --out "$out/kamailio-$sc" "$@" 127.0.0.1:5080 "$sc"
done | tee "$out/kamailio.txt"

steal() { grep -o 'steal_pct=[0-9.]*' "$1" | tail -1; }
for kind in register call register-auth call-auth; do
	s=$(grep -E "^$kind max_(rate|cps)=" "$out/sipedge.txt" | sed -nE 's/^[a-z-]+ max_[a-z]+=([0-9]+) .*/\1/p' | head -1 || true)
	k=$(grep -E "^$kind max_(rate|cps)=" "$out/kamailio.txt" | sed -nE 's/^[a-z-]+ max_[a-z]+=([0-9]+) .*/\1/p' | head -1 || true)
	[ -n "$s" ] && [ -n "$k" ] || continue
	awk -v kind="$kind" -v s="$s" -v k="$k" 'BEGIN { printf "%s: sipedge=%s kamailio=%s ratio=%.2f\n", kind, s, k, s / k }'
done | tee "$out/summary.txt"
echo "sipedge $(steal "$out/sipedge.txt") / kamailio $(steal "$out/kamailio.txt")"
