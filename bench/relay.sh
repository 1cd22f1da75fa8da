#!/usr/bin/env bash
# Loads the media relay (package media) with G.711-shaped RTP and prints
# what it carried, the way docs/relay-limits.md (shared docs) measured:
# the relay in one process, the generator in another, on this host.
#
#   bench/relay.sh [--target sipedge|kernel|rtpengine|both|all] CALLS [DURATION_SECONDS]
#
# A call is one media section relayed both ways: 2 streams, 100 packets/s.
# Warm-up 3 s, measured window DURATION (default 20 s), drain 0.5 s. Prints
# the generator's JSON line, the relay's own counters, and the steal over
# the whole run. Extra flags: RELAY_FLAGS="-workers 1 -latch ssrc",
# GEN_FLAGS="-sw 2 -rw 2 -socks 2"; CPUPROFILE=file profiles the relay;
# GEN_PROGRESS=1 prints the generator's line per second (packets sent and
# received, its worst lag in that second).
# Everything stays on 127.0.0.1: relay ports from 20000, generator
# endpoints 19000 (side A) and 19002 (side B).
#
# --target rtpengine loads rtpengine (Debian's rtpengine-daemon, installed
# when missing) instead, in userspace: the script starts it in the
# foreground with no configuration file, sets the same calls up over its
# ng control protocol (rtpload -mode rtpengine) and runs the same
# generator. rtpengine gets 2 worker threads (--num-threads), as many as
# the relay's workers on this 2-vCPU machine (GOMAXPROCS), its ports from
# 40000, ng control on the first free port from 2223; RTPENGINE_FLAGS adds
# options. --target both runs sipedge and then rtpengine with the same
# generator flags and ends with a comparison line: relay CPU per relayed
# packet (relay cores / received packets per second), loss, p99, the
# generator's lag (above a few ms the machine was saturated and the run
# says little) and steal of each, and the ratio sipedge/rtpengine.
#
# --target kernel runs sipedge's relay with the in-kernel path
# (media.kernel): relay and generator run in a network namespace of their
# own (created and deleted here, IPv4 forwarding on), so the nftables table
# never touches the host's. The kernel forwards in the sending process's
# system call, so its cost shows in the generator's cores and the box's
# busy cores, not in the relay's: compare busy cores. --target all runs
# sipedge, kernel and rtpengine with the same generator.
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: bench/relay.sh [--target sipedge|kernel|rtpengine|both|all] CALLS [DURATION_SECONDS]"
target=sipedge
args=()
while [ $# -gt 0 ]; do
	case $1 in
	--target) target=${2:?$usage}; shift 2 ;;
	--target=*) target=${1#*=}; shift ;;
	-h | --help) echo "$usage"; exit 0 ;;
	-*) echo "$usage" >&2; exit 2 ;;
	*) args+=("$1"); shift ;;
	esac
done
case $target in sipedge | kernel | rtpengine | both | all) ;; *) echo "$usage" >&2; exit 2 ;; esac
calls=${args[0]:?$usage}
dur=${args[1]:-20}
# RAMP=S spreads the calls' starts over S seconds (they arrive over time,
# as in service), before the warm-up and the window.
ramp=${RAMP:-0}
warm=$((3 + ramp))

out=$(mktemp -d /tmp/sipedge-relay.XXXXXX)
go build -o "$out/rtpload" ./bench/rtpload

# Every process started here is ended on the way out, whatever happens.
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	[ -n "${kns:-}" ] && ip netns del "$kns" 2>/dev/null
	rm -rf "$out"
}
trap cleanup EXIT

steal() { awk '/^cpu /{print $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }

# wait_ready PID LOG: waits for the ready file while PID runs.
wait_ready() {
	for _ in $(seq 300); do
		[ -s "$out/ready.json" ] && return 0
		if ! kill -0 "$1" 2>/dev/null; then
			echo "relay failed:" >&2; cat "$2" >&2; exit 1
		fi
		sleep 0.1
	done
	echo "relay not ready after 30 s:" >&2; cat "$2" >&2; exit 1
}

# in: the command prefix that runs a process where the relay runs (the
# kernel target's namespace), empty otherwise.
in=()

# gen NAME: runs the generator against the ready file into $out/NAME.json.
gen() {
	# shellcheck disable=SC2086
	"${in[@]}" timeout -s TERM $((warm + dur + 20)) "$out/rtpload" -mode gen -ready "$out/ready.json" \
		-ramp "${ramp}s" -warm "$((warm - ramp))s" -dur "${dur}s" -drain 500ms ${GEN_FLAGS:-} >"$out/$1.json" 2>"$out/$1.log" || {
		echo "generator failed:" >&2; cat "$out/$1.log" >&2; exit 1
	}
}

run_steal() {
	awk -v s=$(($3 - $1)) -v t=$(($4 - $2)) 'BEGIN { if (t == 0) t = 1; printf "%.1f", 100 * s / t }'
}

# run_sipedge [kernel]: sipedge's relay, in userspace or with the
# in-kernel path.
run_sipedge() {
	local name=sipedge kflag=()
	if [ "${1:-}" = kernel ]; then
		name=kernel kflag=(-kernel)
		kns=sipedge-relay-bench-$$
		ip netns add "$kns"
		ip -n "$kns" link set lo up
		ip netns exec "$kns" sysctl -qw net.ipv4.ip_forward=1
		in=(ip netns exec "$kns")
	fi
	rm -f "$out/ready.json"
	read -r st0 tot0 < <(steal)
	prof=()
	[ -n "${CPUPROFILE:-}" ] && prof=(-cpuprofile "$CPUPROFILE")
	# shellcheck disable=SC2086
	"${in[@]}" timeout -s TERM $((warm + dur + 40)) "$out/rtpload" -mode relay -calls "$calls" \
		-ready "$out/ready.json" "${kflag[@]}" "${prof[@]}" ${RELAY_FLAGS:-} >"$out/relay.json" 2>"$out/relay.log" &
	local tpid=$!
	pids+=("$tpid")
	wait_ready "$tpid" "$out/relay.log"
	# ip netns exec runs the relay as a child: signal the relay itself.
	local rpid
	rpid=$(sed 's/.*"pid":\([0-9]*\).*/\1/' "$out/ready.json")
	gen "$name"
	kill -TERM "$rpid" 2>/dev/null || true
	wait "$tpid" || true

	read -r st1 tot1 < <(steal)
	local rs
	rs=$(run_steal "$st0" "$tot0" "$st1" "$tot1")
	eval "${name}_steal=$rs"
	cat "$out/$name.json"
	echo "relay: $(cat "$out/relay.json")"
	[ "$name" = kernel ] && grep kernel: "$out/relay.log" | tail -"${KERNEL_LOG_LINES:-3}"
	[ -n "${GEN_PROGRESS:-}" ] && grep ' lag ' "$out/$name.log"
	echo "run_steal_pct=$rs (whole run, all CPUs)"
	if [ "$name" = kernel ]; then
		in=()
		ip netns del "$kns"
		kns=
	fi
}

run_rtpengine() {
	if ! command -v rtpengine >/dev/null; then
		echo "installing rtpengine-daemon" >&2
		apt-get update -qq >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rtpengine-daemon >&2
	fi
	local ng=2223
	while ss -Hlun "sport = :$ng" | grep -q .; do ng=$((ng + 1)); done
	local pmin=40000 pmax=$((40000 + 4 * calls + 2000))
	if [ "$pmax" -gt 65535 ]; then pmax=65535; fi
	rm -f "$out/ready.json" "$out/rtpengine.pid"
	read -r st0 tot0 < <(steal)
	# Userspace only (--table=-1: no kernel forwarding table), no
	# configuration file, warnings and errors only, the media timeout and
	# the delete delay out of the way of the run.
	# shellcheck disable=SC2086
	timeout -s TERM $((warm + dur + 120)) rtpengine --config-file=none --foreground --log-stderr \
		--log-level=4 --table=-1 --interface=127.0.0.1 --listen-ng="127.0.0.1:$ng" \
		--port-min="$pmin" --port-max="$pmax" --num-threads=2 --timeout=3600 --delete-delay=0 \
		--pidfile="$out/rtpengine.pid" ${RTPENGINE_FLAGS:-} >"$out/rtpengine.log" 2>&1 &
	local dpid=$!
	pids+=("$dpid")
	for _ in $(seq 100); do
		[ -s "$out/rtpengine.pid" ] && break
		if ! kill -0 "$dpid" 2>/dev/null; then
			echo "rtpengine failed:" >&2; cat "$out/rtpengine.log" >&2; exit 1
		fi
		sleep 0.1
	done
	local rpid
	rpid=$(cat "$out/rtpengine.pid")
	timeout -s TERM $((warm + dur + 100)) "$out/rtpload" -mode rtpengine -calls "$calls" \
		-ng "127.0.0.1:$ng" -ng-pid "$rpid" -ready "$out/ready.json" >"$out/ng.json" 2>"$out/ng.log" &
	local tpid=$!
	pids+=("$tpid")
	wait_ready "$tpid" "$out/ng.log"
	gen rtpengine
	kill -TERM "$tpid" 2>/dev/null || true
	wait "$tpid" || true
	kill -TERM "$dpid" 2>/dev/null || true
	wait "$dpid" || true

	read -r st1 tot1 < <(steal)
	rtpengine_steal=$(run_steal "$st0" "$tot0" "$st1" "$tot1")
	cat "$out/rtpengine.json"
	echo "rtpengine: $(cat "$out/ng.json")"
	echo "run_steal_pct=$rtpengine_steal (whole run, all CPUs)"
}

# field NAME FILE: a number from the generator's JSON line.
field() { sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p" "$2"; }

# summary NAME STEAL: one target's part of the comparison line.
summary() {
	local f=$out/$1.json
	awk -v n="$1" -v c="$(field relay_cores "$f")" -v r="$(field recv_pps "$f")" \
		-v l="$(field loss_pct "$f")" -v p="$(field p99_ms "$f")" -v g="$(field gen_lag_ms "$f")" \
		-v s="$(field steal_pct "$f")" -v rs="$2" \
		'BEGIN { u = r > 0 ? 1e6 * c / r : 0
			printf "%s %.2f us/pkt (relay %s cores at %s pkt/s, loss %s %%, p99 %s ms, generator lag %s ms, steal %s %% window / %s %% run)", n, u, c, r, l, p, g, s, rs }'
}

us_per_pkt() {
	awk -v c="$(field relay_cores "$out/$1.json")" -v r="$(field recv_pps "$out/$1.json")" \
		'BEGIN { u = r > 0 ? 1e6 * c / r : 0; printf "%.4f", u }'
}

case $target in
sipedge) run_sipedge ;;
kernel) run_sipedge kernel ;;
rtpengine) run_rtpengine ;;
all)
	echo "== sipedge (userspace)"
	run_sipedge
	echo "== sipedge (in-kernel path)"
	run_sipedge kernel
	echo "== rtpengine (userspace)"
	run_rtpengine
	for n in sipedge kernel rtpengine; do
		echo "compare: calls=$calls window=${dur}s | $(summary "$n" "$(eval echo "\$${n}_steal")") | gen $(field gen_cores "$out/$n.json") cores, busy $(field busy_cores "$out/$n.json") cores"
	done
	;;
both)
	echo "== sipedge"
	run_sipedge
	echo "== rtpengine (userspace)"
	run_rtpengine
	a=$(us_per_pkt sipedge)
	b=$(us_per_pkt rtpengine)
	echo "compare: calls=$calls window=${dur}s | $(summary sipedge "$sipedge_steal") | $(summary rtpengine "$rtpengine_steal") |" \
		"$(awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "sipedge/rtpengine CPU per packet %.2f", a / b; else print "sipedge/rtpengine n/a" }')"
	;;
esac
