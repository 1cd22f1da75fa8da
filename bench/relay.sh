#!/usr/bin/env bash
# Loads the media relay (package media) with G.711-shaped RTP and prints
# what it carried, the way docs/relay-limits.md (shared docs) measured:
# the relay in one process, the generator in another, on this host.
#
#   bench/relay.sh CALLS [DURATION_SECONDS]
#
# A call is one media section relayed both ways: 2 streams, 100 packets/s.
# Warm-up 3 s, measured window DURATION (default 20 s), drain 0.5 s. Prints
# the generator's JSON line, the relay's own counters, and the steal over
# the whole run. Extra flags: RELAY_FLAGS="-workers 1 -latch ssrc",
# GEN_FLAGS="-sw 2 -rw 2 -socks 2"; CPUPROFILE=file profiles the relay.
# Everything stays on 127.0.0.1: relay ports from 20000, generator
# endpoints 19000 (side A) and 19002 (side B).
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:?usage: bench/relay.sh CALLS [DURATION_SECONDS]}
dur=${2:-20}
warm=3

out=$(mktemp -d /tmp/sipedge-relay.XXXXXX)
go build -o "$out/rtpload" ./bench/rtpload

steal() { awk '/^cpu /{print $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
read -r st0 tot0 < <(steal)

prof=()
[ -n "${CPUPROFILE:-}" ] && prof=(-cpuprofile "$CPUPROFILE")
# shellcheck disable=SC2086
timeout -s TERM $((warm + dur + 40)) "$out/rtpload" -mode relay -calls "$calls" \
	-ready "$out/ready.json" "${prof[@]}" ${RELAY_FLAGS:-} >"$out/relay.json" 2>"$out/relay.log" &
tpid=$!
for _ in $(seq 300); do
	[ -s "$out/ready.json" ] && break
	if ! kill -0 "$tpid" 2>/dev/null; then
		echo "relay failed:" >&2; cat "$out/relay.log" >&2; exit 1
	fi
	sleep 0.1
done
rpid=$(sed 's/.*"pid":\([0-9]*\).*/\1/' "$out/ready.json")

# shellcheck disable=SC2086
timeout -s TERM $((warm + dur + 20)) "$out/rtpload" -mode gen -ready "$out/ready.json" \
	-warm "${warm}s" -dur "${dur}s" -drain 500ms ${GEN_FLAGS:-} >"$out/gen.json" 2>"$out/gen.log" || {
	echo "generator failed:" >&2; cat "$out/gen.log" >&2; kill -TERM "$rpid" 2>/dev/null || true; exit 1
}
kill -TERM "$rpid" 2>/dev/null || true
wait "$tpid" || true

read -r st1 tot1 < <(steal)
cat "$out/gen.json"
echo "relay: $(cat "$out/relay.json")"
awk -v s=$((st1 - st0)) -v t=$((tot1 - tot0)) 'BEGIN { if (t == 0) t = 1; printf "run_steal_pct=%.1f (whole run, all CPUs)\n", 100 * s / t }'
rm -rf "$out"
