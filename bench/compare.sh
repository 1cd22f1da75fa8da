#!/usr/bin/env bash
# Runs the sipp harness (bench/harness, the shared sipp scenarios and
# Kamailio config) against sipedge and against Kamailio in one run on this
# machine, and prints both results and their ratio.
#
#   bench/compare.sh [register|call|both|auth|register-auth|call-auth|all|media|ceiling] [extra harness options...]
#
# both (the default) measures REGISTER and then calls on each side: one
# invocation gives both ratios from the same run. auth measures the
# digest-auth scenarios (register-auth, call-auth): sipedge then trusts
# nobody and challenges every REGISTER (401) and INVITE (407) against a
# users file of the harness's users, Kamailio runs with WITH_AUTH. all is
# the harness's own "all" (with Kamailio it adds the digest-auth scenarios).
# register-auth and call-auth run one of the two.
#
# ceiling shows how much of the REGISTER-with-digest comparison is the
# load generator's: the harness's register-auth against a registrar that
# does no work (sipp with bench/harness/sipp/register-auth-uas.xml, a fixed
# 401 and then 200, nothing verified or stored), then sipedge and Kamailio
# as "register-auth" does, all in one run. That registrar is a reference,
# not a bound (it is a single-threaded sipp on the same CPUs, no cheaper
# per message than a good server); the bound is the harness's UAC, whose
# CPU every step reports (uac_sipp_cpu_s):
#   bench/compare.sh ceiling --duration 5 --confirm 10 --retries 2 --reg-rates "12000 16000 20000 24000"
#
# media measures calls with relayed media (the harness's call-media: an
# audio offer in the INVITE, the answer in the 200, each sipp failing the
# call if the SDP it receives was not rewritten to a relay): sipedge runs
# with media.relay always (loopback calls are not behind NAT, so "auto"
# would not relay them), Kamailio with the rtpengine module and rtpengine
# beside it; Kamailio's CPU is then Kamailio's plus rtpengine's. Both relays
# take their ports from 10000-24999 (one side runs at a time): 3 750 calls
# at once, about 3 500 calls/s with the 1 s hold, which the file descriptor
# limit (20 000 here, 4 sockets a call) does not let grow much. Without
# --call-rates the ladder starts lower than for plain calls and stops at
# 3 000/s, below that ceiling; Kamailio runs 8 workers rather than 4
# (they wait for rtpengine's answers):
#   bench/compare.sh media
#   bench/compare.sh media --call-rates 200 --bisect 0 --confirm 0 --duration 10
#
# A fixed rate instead of the search for the maximum, e.g. 4000 REGISTER/s:
#   bench/compare.sh auth --reg-rates 4000 --call-rates 800 --bisect 0 --confirm 0
#
# CPU per 1 000 at fixed ordinary rates, side by side: "fixed" runs each
# rate on sipedge and then on Kamailio, alternating, REPEAT times (default
# 3), and prints every pair with its ratio and steal:
#   bench/compare.sh fixed [--repeat N] [--reg "400 4000"] [--call "100 800"] [--duration S]
#
# STORE_SYNC=write runs sipedge with store.sync: write (a binding is in the
# kernel, not yet on disk, before its 200: it survives a sipedge crash, not
# a power cut) — closer to the bench Kamailio, which keeps bindings in
# memory only; the default is sipedge's own default, fsync.
#
# sipedge listens on 127.0.0.1:5070, Kamailio on 127.0.0.1:5080. Needs sipp
# (Debian sip-tester) and kamailio; run as root or with both installed. media
# also needs rtpengine (Debian rtpengine-daemon), which the harness installs
# when it runs as root and finds it missing.
# Results and every sipp log go to a new directory under /tmp.
set -euo pipefail
cd "$(dirname "$0")/.."
scen=${1:-both}
shift || true
repeat=3 fixreg="400 4000" fixcall="100 800" fixdur=10
if [ "$scen" = fixed ]; then
	while [ $# -gt 0 ]; do
		case $1 in
		--repeat) repeat=$2; shift 2 ;;
		--reg) fixreg=$2; shift 2 ;;
		--call) fixcall=$2; shift 2 ;;
		--duration) fixdur=$2; shift 2 ;;
		*) echo "compare.sh fixed: unknown option $1" >&2; exit 2 ;;
		esac
	done
fi
out=$(mktemp -d /tmp/sipedge-bench.XXXXXX)
echo "results in $out"

mkdir -p "$out/bin"
go build -o "$out/bin/sipedge" ./cmd/sipedge
printf 'store:\n  dir: %s/data\n  sync: %s\n' "$out" "${STORE_SYNC:-fsync}" >"$out/sipedge.yaml"
if [ "$scen" = media ]; then
	# Every call's media through the relay: the harness's sipp instances
	# call each other on 127.0.0.1, where "auto" finds no NAT. The port
	# range is rtpengine's in the harness, below sipp's SIP (25000..) and
	# media (26000..) ports. No RTP flows, so every call is silent: a call
	# an overloaded step left without its BYE is freed after 10 s instead
	# of 60 s, before the next step (the harness gives rtpengine the same
	# timeouts); calls last about 1 s, so no call in progress is ended.
	printf 'media:\n  relay: always\n  ports: 10000-24999\n  inactivity: 10s\n' >>"$out/sipedge.yaml"
fi
case $scen in auth | register-auth | call-auth | ceiling) authcfg=1 ;; *) authcfg=0 ;; esac
if [ "$authcfg" = 1 ]; then
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

if [ "$scen" = fixed ]; then
	# One fixed-rate step of scenario $2 at rate $3 against $1 (sipedge or
	# kamailio); prints "cpu_per_1k steal".
	step() {
		local who=$1 sc=$2 rate=$3 o="$out/$1-$2-$3-$4" opt
		[ "$sc" = register ] && opt=--reg-rates || opt=--call-rates
		if [ "$who" = sipedge ]; then
			bench/harness/run-sip-bench.sh --proxy-pid "$pid" --out "$o" $opt "$rate" --bisect 0 --confirm 0 \
				--duration "$fixdur" 127.0.0.1:5070 "$sc" >"$o.txt" 2>&1 || true
		else
			bench/harness/run-sip-bench.sh --kamailio --out "$o" $opt "$rate" --bisect 0 --confirm 0 \
				--duration "$fixdur" 127.0.0.1:5080 "$sc" >"$o.txt" 2>&1 || true
		fi
		local line
		line=$(grep -E "^$sc max_(rate|cps)=" "$o.txt" | head -1)
		local cpu fail
		cpu=$(printf '%s' "$line" | grep -oE 'proxy_cpu_s_per_1k(_calls)?=[0-9.]+' | cut -d= -f2)
		fail=$(grep -E "^step $sc " "$o.txt" | grep -c FAIL || true)
		printf '%s %s %s\n' "${cpu:-NA}" "$(printf '%s' "$line" | grep -oE 'steal_pct=[0-9.]+' | cut -d= -f2)" "$fail"
	}
	printf '%-9s %6s %3s  %-22s %-22s %s\n' scenario rate run "sipedge cpu/1k (steal)" "kamailio cpu/1k (steal)" ratio | tee "$out/fixed.txt"
	for r in $(seq 1 "$repeat"); do
		for sc in register call; do
			[ "$sc" = register ] && rates=$fixreg || rates=$fixcall
			for rate in $rates; do
				read -r sv ss sf < <(step sipedge "$sc" "$rate" "$r")
				read -r kv ks kf < <(step kamailio "$sc" "$rate" "$r")
				ratio=$(awk -v a="$sv" -v b="$kv" 'BEGIN { if (b > 0 && a != "NA") printf "%.2f", a / b; else print "NA" }')
				note=""
				[ "$sf" = 0 ] || note="$note sipedge-step-failed"
				[ "$kf" = 0 ] || note="$note kamailio-step-failed"
				printf '%-9s %6s %3s  %-22s %-22s %s%s\n' "$sc" "$rate" "$r" "$sv ($ss%)" "$kv ($ks%)" "$ratio" "$note" | tee -a "$out/fixed.txt"
			done
		done
	done
	kill $pid; wait $pid 2>/dev/null || true
	trap - EXIT
	exit 0
fi

scens=$scen
[ "$scen" = both ] && scens="register call"
[ "$scen" = auth ] && scens="register-auth call-auth"
if [ "$scen" = ceiling ]; then
	scens=register-auth
	# The do-nothing registrar on 127.0.0.1:5090, its CPU measured as the
	# proxy's; the same harness options as the two servers below.
	uasxml=$PWD/bench/harness/sipp/register-auth-uas.xml
	(cd "$out" && exec sipp -sf "$uasxml" -i 127.0.0.1 -p 5090 \
		-nostdin -buff_size 4194304 >"$out/null-registrar.log" 2>&1) &
	npid=$!
	sleep 1
	bench/harness/run-sip-bench.sh --proxy-pid "$npid" --out "$out/null-register-auth" "$@" 127.0.0.1:5090 register-auth |
		tee "$out/null.txt"
	kill "$npid" 2>/dev/null; wait "$npid" 2>/dev/null || true
fi
if [ "$scen" = media ]; then
	scens=call-media
	# a default ladder that starts below the plain calls' one (a relayed
	# call costs Kamailio + rtpengine about 3 times a plain call's CPU) and
	# stops below the port pool's ceiling. Kamailio gets 8 workers instead
	# of 4: each one waits for rtpengine's answer to every offer, answer
	# and delete, and with 4 it failed 750 calls/s that it passes with 8
	# (16 did no better than 8). Options given come later and win.
	set -- --call-rates "250 500 1000 2000 3000" --kamailio-children 8 "$@"
fi
for sc in $scens; do
	bench/harness/run-sip-bench.sh --proxy-pid "$pid" --out "$out/sipedge-$sc" "$@" 127.0.0.1:5070 "$sc"
done | tee "$out/sipedge.txt"
kill $pid; wait $pid 2>/dev/null || true
trap - EXIT
for sc in $scens; do
	bench/harness/run-sip-bench.sh --kamailio --out "$out/kamailio-$sc" "$@" 127.0.0.1:5080 "$sc"
done | tee "$out/kamailio.txt"

steal() { grep -o 'steal_pct=[0-9.]*' "$1" | tail -1; }
for kind in register call register-auth call-auth call-media; do
	s=$(grep -E "^$kind max_(rate|cps)=" "$out/sipedge.txt" | sed -nE 's/^[a-z-]+ max_[a-z]+=([0-9]+) .*/\1/p' | head -1 || true)
	k=$(grep -E "^$kind max_(rate|cps)=" "$out/kamailio.txt" | sed -nE 's/^[a-z-]+ max_[a-z]+=([0-9]+) .*/\1/p' | head -1 || true)
	[ -n "$s" ] && [ -n "$k" ] || continue
	awk -v kind="$kind" -v s="$s" -v k="$k" 'BEGIN { printf "%s: sipedge=%s kamailio=%s ratio=%.2f\n", kind, s, k, s / k }'
done | tee "$out/summary.txt"
if [ "$scen" = ceiling ]; then
	n=$(grep -E "^register-auth max_rate=" "$out/null.txt" | sed -nE 's/^[a-z-]+ max_[a-z]+=([0-9]+) .*/\1/p' | head -1 || true)
	k=$(grep -E "^register-auth max_rate=" "$out/kamailio.txt" | sed -nE 's/^[a-z-]+ max_[a-z]+=([0-9]+) .*/\1/p' | head -1 || true)
	awk -v n="${n:-0}" -v k="${k:-0}" 'BEGIN { printf "register-auth ceiling: a registrar doing no work=%s (%s of kamailio=%s)\n", n, (k > 0 ? sprintf("%.2f", n / k) : "NA"), k }' |
		tee -a "$out/summary.txt"
	echo "null registrar $(steal "$out/null.txt")"
fi
echo "sipedge $(steal "$out/sipedge.txt") / kamailio $(steal "$out/kamailio.txt")"
if [ "$scen" = media ]; then
	# calls/s, failures and CPU per 1 000 calls of each side (Kamailio's
	# with rtpengine's), from the result line (max search) or, when that
	# has no rate (every step failed), from the last step line; the ratio
	# only when both rates were reached with 0 failures
	side() { # side FILE -> "cps failures cpu_per_1k steal"
		local l
		l=$(grep -E '^call-media max_cps=[0-9]' "$1" | tail -1)
		if [ -n "$l" ]; then
			printf '%s\n' "$l" | awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
				print v["max_cps"], v["failures"], v["proxy_cpu_s_per_1k_calls"], v["steal_pct"] }'
		else
			grep -E '^step call-media ' "$1" | tail -1 | awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
				print "FAIL(" v["rate"] ")", v["failed"] + v["uas_failed"] + (v["n"] - v["ok"]), v["proxy_cpu_s_per_1k"], v["steal_pct"] }'
		fi
	}
	read -r sc sf sk ss < <(side "$out/sipedge.txt")
	read -r kc kf kk ks < <(side "$out/kamailio.txt")
	awk -v sc="$sc" -v kc="$kc" -v sf="$sf" -v kf="$kf" -v sk="$sk" -v kk="$kk" -v ss="$ss" -v ks="$ks" 'BEGIN {
		r = (sc + 0 > 0 && kc + 0 > 0 && sf == "0" && kf == "0") ? sprintf("%.2f", sc / kc) : "NA"
		printf "calls with relayed media: calls/s sipedge=%s kamailio+rtpengine=%s ratio=%s\n", sc, kc, r
		printf "  failures sipedge=%s kamailio+rtpengine=%s\n", sf, kf
		c = (sk + 0 > 0 && kk + 0 > 0) ? sprintf(" (kamailio+rtpengine/sipedge=%.2f)", kk / sk) : ""
		printf "  CPU s per 1 000 calls sipedge=%s kamailio+rtpengine=%s%s\n", sk, kk, c
		printf "  steal_pct sipedge=%s kamailio+rtpengine=%s\n", ss, ks
	}' | tee -a "$out/summary.txt"
fi
