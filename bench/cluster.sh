#!/usr/bin/env bash
# The cost of a cluster, side by side in one run: the sipp harness
# (bench/harness) against
#
#   single    one sipedge with its embedded store (each binding fsynced);
#   sipedge2  two sipedge instances sharing their bindings through Redis
#             (store.redis), the load sent to the first: every binding is
#             written to Redis before its 200 and installed by the second
#             instance from the subscription;
#   kamailio2 two Kamailio 5.6 nodes replicating their location table with
#             dmq_usrloc (the harness's configuration plus dmq), the load
#             sent to the first.
#
# The CPU measured for a cluster is all of it: both instances and Redis
# (sipedge2), both nodes (kamailio2); for sipedge2 a line per scenario
# also splits it between the first instance, the second and Redis over
# the whole search ("# register cpu_s first=..."). Each target gets the
# max-rate search of register and call; the summary prints each one's
# rate, the sipedge cluster against the Kamailio cluster, and what sharing
# costs against one sipedge.
#
#   bench/cluster.sh [register|call|both] [extra harness options...]
#   bench/cluster.sh both --reg-rates "8000 16000 24000" --call-rates "1000 2000 3000" --confirm 10
#   TARGETS="sipedge2 kamailio2" bench/cluster.sh ...   # some of the three
#   KAM_ARGS='--reg-rates "2000 4000 6000 8000"' ...   # options for kamailio2 only
#   PROFILE=1 bench/cluster.sh register ...   # a CPU profile of every sipedge
#                                             # for the whole run (NAME.pprof)
#
# Redis runs with appendonly yes and appendfsync everysec (REDIS_FSYNC=always
# for every write on disk before its reply, as a cluster that promises no
# lost binding across a Redis crash runs it). Addresses: sipedge on
# 127.0.0.1:5070 (second instance 127.0.0.2:5070), Kamailio on
# 127.0.0.1:5080 (second node 127.0.0.2:5080, dmq on port 5090), Redis on
# 127.0.0.1:6390. Needs sipp, kamailio (Debian, with dmq_usrloc) and
# redis-server. Results go to a new directory under /tmp.
set -euo pipefail
cd "$(dirname "$0")/.."
scen=${1:-both}
shift || true
scens=$scen
[ "$scen" = both ] && scens="register call"
out=$(mktemp -d /tmp/sipedge-cluster.XXXXXX)
echo "results in $out"
mkdir -p "$out/bin"
go build -o "$out/bin/sipedge" ./cmd/sipedge

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

wait_udp() { # wait_udp ADDR:PORT
	for _ in $(seq 1 100); do
		ss -Hlnu "sport = :${1##*:}" 2>/dev/null | grep -q "${1%:*}" && return 0
		sleep 0.1
	done
	echo "nothing listens on $1" >&2
	return 1
}

sipedge() { # sipedge NAME IP [redis]
	local name=$1 ip=$2 cfg="$out/$1.yaml"
	printf 'store:\n  dir: %s/%s-data\n' "$out" "$name" >"$cfg"
	# The harness's users and callee are at 127.0.0.1, which is the local
	# domain on both instances.
	printf 'domains: ["127.0.0.1"]\n' >>"$cfg"
	if [ "${3:-}" = redis ]; then
		printf '  redis:\n    addrs: [127.0.0.1:6390]\n    prefix: "bench:"\n' | sed -i '/^store:/r /dev/stdin' "$cfg"
	fi
	local prof=()
	[ -z "${PROFILE:-}" ] || prof=(--cpuprofile "$out/$name.pprof")
	"$out/bin/sipedge" --listen "udp:$ip:5070" --admin-listen off --log-level warn --config "$cfg" "${prof[@]}" >"$out/$name.log" 2>&1 &
	pids+=($!)
	wait_udp "$ip:5070"
}

targets=${TARGETS:-single sipedge2 kamailio2}
want() { [[ " $targets " == *" $1 "* ]]; }
shift_args=("$@")
eval "kam_args=(${KAM_ARGS:-})"
touch "$out/single.txt" "$out/sipedge2.txt" "$out/kamailio2.txt"

# 1. one sipedge, embedded store
if want single; then
sipedge single 127.0.0.1
single=${pids[-1]}
for sc in $scens; do
	bench/harness/run-sip-bench.sh --proxy-pid "$single" --out "$out/single-$sc" "${shift_args[@]}" 127.0.0.1:5070 "$sc"
done | tee "$out/single.txt"
kill "$single"; wait "$single" 2>/dev/null || true
fi

# 2. two sipedge instances and Redis
if want sipedge2; then
redis-server --port 6390 --bind 127.0.0.1 --save "" --appendonly yes --appendfsync "${REDIS_FSYNC:-everysec}" \
	--dir "$out" --logfile "$out/redis.log" &
redis=$!
pids+=($redis)
for _ in $(seq 1 100); do grep -q "Ready to accept" "$out/redis.log" 2>/dev/null && break; sleep 0.1; done
sipedge cluster-a 127.0.0.1 redis
a=${pids[-1]}
sipedge cluster-b 127.0.0.2 redis
b=${pids[-1]}
sleep 1.5 # a heartbeat: each knows the other
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # utime + stime of a process, in 1/100 s
for sc in $scens; do
	a0=$(ticks "$a") b0=$(ticks "$b") r0=$(ticks "$redis")
	bench/harness/run-sip-bench.sh --proxy-pid "$a,$b,$redis" --out "$out/sipedge2-$sc" "${shift_args[@]}" 127.0.0.1:5070 "$sc"
	# where the cluster's CPU went over the whole search: the instance that
	# took the load, the one installing its writes, Redis
	a1=$(ticks "$a") b1=$(ticks "$b") r1=$(ticks "$redis")
	awk -v sc="$sc" -v a=$((a1 - a0)) -v b=$((b1 - b0)) -v r=$((r1 - r0)) 'BEGIN {
		t = a + b + r; if (t == 0) t = 1
		printf "# %s cpu_s first=%.2f (%.0f%%) second=%.2f (%.0f%%) redis=%.2f (%.0f%%)\n", sc, a / 100, 100 * a / t, b / 100, 100 * b / t, r / 100, 100 * r / t
	}'
done | tee "$out/sipedge2.txt"
# the second instance must hold what the first took
echo "# AoRs in Redis: $(redis-cli -p 6390 --scan --pattern 'bench:aor:*' | wc -l)" | tee -a "$out/sipedge2.txt"
kill "$a" "$b" "$redis"; wait "$a" "$b" "$redis" 2>/dev/null || true
fi

# 3. two Kamailio nodes with dmq_usrloc
kcfg() { # kcfg IP PEER -> a node's configuration from the harness's
	sed -e "s/127\.0\.0\.1:BENCH_PORT/$1:BENCH_PORT/g" \
		-e '/^loadmodule "usrloc.so"/a loadmodule "dmq.so"\nloadmodule "dmq_usrloc.so"' \
		-e '/^listen=tcp:/a listen=udp:'"$1"':5090' \
		-e '/^modparam("usrloc", "db_mode"/a modparam("dmq", "server_address", "sip:'"$1"':5090")\nmodparam("dmq", "notification_address", "sip:'"$2"':5090")\nmodparam("dmq", "num_workers", 2)\nmodparam("dmq_usrloc", "enable", 1)' \
		-e '/^request_route {/a \	if (is_method("KDMQ") \&\& $Rp == 5090) {\n\t\tdmq_handle_message();\n\t\texit;\n\t}' \
		bench/harness/kamailio/kamailio.cfg >"$out/kamailio-$1.cfg"
}
kam() { # kam IP PEER
	kcfg "$1" "$2"
	kamailio -DD -E -f "$out/kamailio-$1.cfg" -m 1024 -M 16 -A "CHILDREN=4" -A "BENCH_PORT=5080" \
		>"$out/kamailio-$1.log" 2>&1 &
	pids+=($!)
	wait_udp "$1:5080"
}
if want kamailio2; then
kam 127.0.0.1 127.0.0.2
k1=${pids[-1]}
kam 127.0.0.2 127.0.0.1
k2=${pids[-1]}
sleep 2 # dmq nodes find each other
for sc in $scens; do
	bench/harness/run-sip-bench.sh --proxy-pid "$k1,$k2" --out "$out/kamailio2-$sc" "${shift_args[@]}" "${kam_args[@]}" 127.0.0.1:5080 "$sc"
done | tee "$out/kamailio2.txt"
kill "$k1" "$k2"; wait "$k1" "$k2" 2>/dev/null || true
fi

# (a target not run has no lines: empty, not an error)
rate() { grep -E "^$2 max_(rate|cps)=" "$out/$1.txt" | sed -nE 's/^[a-z-]+ max_[a-z]+=([0-9]+) .*/\1/p' | head -1 || true; }
cpu() { grep -E "^$2 max_(rate|cps)=" "$out/$1.txt" | grep -oE 'proxy_cpu_s_per_1k(_calls)?=[0-9.]+' | cut -d= -f2 | head -1 || true; }
steal() { grep -oE 'steal_pct=[0-9.]+' "$out/$1.txt" | tail -1 | cut -d= -f2 || true; }
for sc in $scens; do
	s=$(rate single "$sc") c=$(rate sipedge2 "$sc") k=$(rate kamailio2 "$sc")
	awk -v sc="$sc" -v s="${s:-0}" -v c="${c:-0}" -v k="${k:-0}" -v cs="$(cpu single "$sc")" -v cc="$(cpu sipedge2 "$sc")" -v ck="$(cpu kamailio2 "$sc")" 'BEGIN {
		r = (k > 0 && c > 0) ? sprintf("%.2f", c / k) : "n/a"
		sh = (s > 0 && c > 0) ? sprintf("%.0f%%", 100 * (s - c) / s) : "n/a"
		printf "%s: single=%s sipedge2=%s kamailio2=%s  sipedge2/kamailio2=%s  sharing costs %s of one instance'"'"'s rate\n", sc, s, c, k, r, sh
		printf "  CPU s per 1 000 (whole cluster): single=%s sipedge2=%s kamailio2=%s\n", cs, cc, ck
	}'
done | tee "$out/summary.txt"
echo "steal_pct single=$(steal single) sipedge2=$(steal sipedge2) kamailio2=$(steal kamailio2)" | tee -a "$out/summary.txt"
