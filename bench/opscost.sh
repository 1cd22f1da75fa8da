#!/usr/bin/env bash
# What the operations features cost: the same sipedge build measured with
# them off and on, alternating, in one run (sipp harness, call scenario).
#
#   off: no operations server (--admin-listen off), no call log file, no HEP
#   on:  the operations server with a browser's page open on it (its live
#        event stream held by a client, and what the page polls),
#        /metrics scraped every second, /api/v1/calls?limit=100 read every
#        second (--api-poll 0: not), the call log written to a file, HEP
#        sent to a collector
#
#   bench/opscost.sh [--repeat N] [--rate R] [--duration S] [--warm] [--max] [--features "admin calllog hep"] [--hep-transport udp|tcp|udp-remote] [--api-poll 1|0] [--stream 1|0] [--scrape 1|0] [--concurrent] [--against OLD] [--hold MS]
#
# --features turns on only those of the three (default all): admin (the
# server, the page's event stream and the scrapes), calllog (the file),
# hep (the collector), to see what each costs; --stream 0 and --scrape 0
# leave the server's event-stream client and its scrapes out, to split
# the server's part. --hep-transport tcp sends
# HEP to a TCP collector (tcp:127.0.0.1:9960) instead of UDP.
# --hep-transport udp-remote (root) runs everything in a private network
# namespace and sends HEP over UDP to 192.0.2.2, out of a veth interface
# whose peer is down, which drops it: what a collector on another machine
# costs the sender (the transmit path only). A collector on loopback
# also charges the sender its receive path, per datagram.
#
# Each repeat measures CPU per 1 000 calls at R calls/s (default 800) on
# each side; --max also searches each side's maximum call rate. Prints
# every pair and the on/off ratios. sipedge listens on 127.0.0.1:5070.
#
# Each side's figure is the harness's final step (its result line), which
# follows its search step at the same rate on the same process. --warm
# adds one more search step of the same length before them, also not
# counted: a server that has run for a while, whose heap, capture chunks
# and call lists have reached their working size (a fresh process takes that memory page by page in
# its first tens of seconds, ~10 us a page on this host, and the
# operations features hold more of it than the core alone).
#
# --concurrent runs the two sides of a pair at the same time, each
# sipedge with its own sipp pair (127.0.0.1:5070 and :5072, the sides
# swapping places from pair to pair): both then share the machine's
# phase, which moves one side alone by a quarter from run to run
# (docs/PERFORMANCE.md), so the ratio of a pair says more than the ratio
# of two runs one after the other. The machine carries twice the rate.
# The two places are not alike (the "on" side on :5072 in odd pairs, on
# :5070 in even ones): run an even number of pairs and read the mean of
# the places, printed last.
# The --max searches stay one after the other.
#
# --against OLD compares two builds with the features on instead: the
# commit OLD (built from a temporary git worktree, its operations server
# on 127.0.0.1:18081) in place of the "off" side, the work tree as "on";
# the ratios are new/old. --hold sets the calls' length (default 1000 ms:
# about R calls in progress; longer calls, more of them).
set -euo pipefail
self=$(realpath "$0") args=("$@")
cd "$(dirname "$0")/.."
repeat=3 rate=800 dur=10 max=0 features="admin calllog hep" hept=udp apipoll=1 stream=1 scrape=1 concurrent=0 against= hold=1000 warm=0
while [ $# -gt 0 ]; do
	case $1 in
	--repeat) repeat=$2; shift 2 ;;
	--rate) rate=$2; shift 2 ;;
	--duration) dur=$2; shift 2 ;;
	--max) max=1; shift ;;
	--warm) warm=1; shift ;;
	--features) features=$2; shift 2 ;;
	--hep-transport) hept=$2; shift 2 ;;
	--api-poll) apipoll=$2; shift 2 ;;
	--stream) stream=$2; shift 2 ;;
	--scrape) scrape=$2; shift 2 ;;
	--concurrent) concurrent=1; shift ;;
	--against) against=$2; shift 2 ;;
	--hold) hold=$2; shift 2 ;;
	*) echo "opscost.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
case $hept in udp | tcp) ;; udp-remote)
	if [ -z "${SIPEDGE_OPSCOST_NETNS:-}" ]; then
		[ "$(id -u)" = 0 ] || { echo "opscost.sh: --hep-transport udp-remote needs root (a network namespace)" >&2; exit 2; }
		SIPEDGE_OPSCOST_NETNS=1 exec unshare --net -- "$self" "${args[@]}"
	fi
	# A veth pair whose far end stays down: what is sent out of hep0
	# goes through the whole transmit path and is dropped at the pair
	# (the neighbour entry is static: no ARP).
	ip link set lo up
	ip link add hep0 type veth peer name hep1
	ip addr add 192.0.2.1/24 dev hep0
	ip link set hep0 up
	ip neigh add 192.0.2.2 lladdr 02:00:00:00:00:02 dev hep0 nud permanent
	;;
*) echo "opscost.sh: --hep-transport udp, tcp or udp-remote" >&2; exit 2 ;; esac
out=$(mktemp -d /tmp/sipedge-opscost.XXXXXX)
echo "results in $out (on: $features; HEP over $hept)"
mkdir -p "$out/bin"
go build -o "$out/bin/sipedge" ./cmd/sipedge
if [ -n "$against" ]; then
	git worktree add -q --detach "$out/old-src" "$against"
	trap 'git worktree remove --force "$out/old-src" 2>/dev/null || true' EXIT
	(cd "$out/old-src" && go build -o "$out/bin/old" ./cmd/sipedge)
fi

# A HEP collector that reads and discards (its own CPU is not measured).
python3 -c '
import socket, sys
if sys.argv[1] == "udp-remote":
    sys.exit(0)  # nothing receives: the veth pair drops it
if sys.argv[1] == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 9960))
    while True:
        s.recv(65536)
l = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", 9960))
l.listen(8)
def drain(c):
    while c.recv(1 << 20):
        pass
    c.close()
import threading
while True:
    c, _ = l.accept()
    threading.Thread(target=drain, args=(c,), daemon=True).start()
' "$hept" &
sink=$!
pids=()
cleanup() {
	kill $sink 2>/dev/null || true
	kill "${pids[@]}" 2>/dev/null || true
	pkill -P $$ 2>/dev/null || true
	[ -z "$against" ] || git worktree remove --force "$out/old-src" 2>/dev/null || true
}
trap cleanup EXIT

# run SIDE NAME PORT UAC-BASE HARNESS-OPTIONS...: starts sipedge as SIDE
# on 127.0.0.1:PORT, runs the harness (its sipp ports from UAC-BASE),
# prints its summary line.
run() {
	local side=$1 name=$2 port=$3 base=$4
	shift 4
	local cfg="$out/$name.yaml" args=() pid helpers=() bin="$out/bin/sipedge" adm=127.0.0.1:18080
	[ "$side" = old ] && bin="$out/bin/old" adm=127.0.0.1:18081
	printf 'store:\n  dir: %s/data-%s\n' "$out" "$name" >"$cfg"
	args=(--admin-listen off)
	if [ "$side" != off ]; then
		on calllog && printf 'call_log:\n  file: %s/calls-%s.jsonl\n' "$out" "$name" >>"$cfg"
		if [ "$hept" = udp-remote ]; then
			on hep && printf 'hep:\n  collectors: [udp:192.0.2.2:9960]\n' >>"$cfg"
		else
			on hep && printf 'hep:\n  collectors: [%s:127.0.0.1:9960]\n' "$hept" >>"$cfg"
		fi
		on admin && args=(--admin-listen "$adm")
	fi
	"$bin" --listen "udp:127.0.0.1:$port" --log-level warn --config "$cfg" "${args[@]}" >"$out/$name.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	sleep 1
	if [ "$side" != off ] && on admin; then
		# What the page asks for while it shows the calls (admin/web/app.js:
		# the live stream, /healthz and /api/v1/survival every 5 s), a
		# Prometheus scrape every second (fifteen times the 15 s of
		# Prometheus' example configuration), and an API client reading
		# the last 100 calls every second (--api-poll 0: none). Each client
		# is one curl process on one kept-alive connection, as a browser
		# and Prometheus are (curl --rate, a numbered URL per request), not
		# a new process and connection per request.
		if [ "$stream" = 1 ]; then
			curl -sN "http://$adm/api/v1/events" >/dev/null 2>&1 &
			helpers+=($!)
		fi
		poll() { curl -s --rate "$1" "${@:2}" >/dev/null 2>&1 & helpers+=($!); }
		poll 12/m "http://$adm/healthz?n=[1-1000000]"
		poll 12/m "http://$adm/api/v1/survival?n=[1-1000000]"
		[ "$scrape" = 1 ] && poll 1/s "http://$adm/metrics?n=[1-1000000]"
		[ "$apipoll" = 1 ] && poll 1/s "http://$adm/api/v1/calls?limit=100&n=[1-1000000]"
	fi
	bench/harness/run-sip-bench.sh --proxy-pid "$pid" --out "$out/$name" --uac-port "$base" --uas-port $((base + 500)) \
		"$@" "127.0.0.1:$port" call >"$out/$name.txt" 2>&1 || true
	kill "${helpers[@]}" 2>/dev/null || true
	kill -INT "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	grep -E '^call max_cps=' "$out/$name.txt" | head -1
}
# pair R HARNESS-OPTIONS...: the off and the on side of pair R, one after
# the other or (--concurrent) at once; sets o and n to their lines.
pair() {
	local r=$1 off=off
	[ -n "$against" ] && off=old
	shift
	if [ "$concurrent" = 0 ]; then
		o=$(run $off "off-$r" 5070 25000 "$@")
		n=$(run on "on-$r" 5070 25000 "$@")
		return
	fi
	# The sides swap places from pair to pair: the second harness starts
	# a moment after the first.
	local po=5070 pn=5072 bo=25000 bn=27000
	if [ $((r % 2)) = 0 ]; then po=5072 pn=5070 bo=27000 bn=25000; fi
	run $off "off-$r" $po $bo "$@" >"$out/line-off-$r" &
	local w=$!
	n=$(run on "on-$r" $pn $bn "$@")
	wait $w || true
	o=$(cat "$out/line-off-$r")
}
on() { case " $features " in *" $1 "*) return 0 ;; esac; return 1; }
field() { printf '%s' "$1" | grep -oE "$2=[0-9.]+" | head -1 | cut -d= -f2; }

if [ -n "$against" ]; then
	printf '%-5s %-28s %-28s %s\n' run "$against cpu/1k (steal)" "new cpu/1k (steal)" new/old | tee "$out/summary.txt"
else
	printf '%-5s %-28s %-28s %s\n' run "off cpu/1k (steal)" "on cpu/1k (steal)" on/off | tee "$out/summary.txt"
fi
ratios=() sumo=0 sumn=0
for r in $(seq 1 "$repeat"); do
	rates=$rate
	[ "$warm" = 1 ] && rates="$rate $rate"
	pair "$r" --call-rates "$rates" --bisect 0 --confirm 0 --duration "$dur" --hold "$hold"
	oc=$(field "$o" proxy_cpu_s_per_1k_calls) nc=$(field "$n" proxy_cpu_s_per_1k_calls)
	printf '%-5s %-28s %-28s %s\n' "$r" "$oc ($(field "$o" steal_pct)%)" "$nc ($(field "$n" steal_pct)%)" \
		"$(awk -v a="$nc" -v b="$oc" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "NA" }')" | tee -a "$out/summary.txt"
	ratios+=("$(awk -v a="$nc" -v b="$oc" 'BEGIN { if (b > 0) printf "%.4f", a / b }')")
	sumo=$(awk -v s="$sumo" -v x="$oc" 'BEGIN { print s + x }') sumn=$(awk -v s="$sumn" -v x="$nc" 'BEGIN { print s + x }')
done
# One pair moves with the machine's phase (docs/PERFORMANCE.md): the
# median of the pairs' ratios and the ratio of the sums say more.
if [ "${#ratios[@]}" -gt 1 ]; then
	printf '%s over %d pairs: median %s, sums %s\n' "$([ -n "$against" ] && echo new/old || echo on/off)" "${#ratios[@]}" \
		"$(printf '%s\n' "${ratios[@]}" | grep . | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "NA"; else if (NR % 2) printf "%.2f", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }')" \
		"$(awk -v a="$sumn" -v b="$sumo" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "NA" }')" | tee -a "$out/summary.txt"
fi
# At once, the "on" side sits on :5072 in the odd pairs, where both of
# sipp's ports hash to one reader of sipedge's, and on :5070 in the even
# ones, where the legs are on two readers: one place magnifies the extra
# work of a side and the other hides most of it (docs/PERFORMANCE.md,
# "What a microsecond per message costs on this host"). The mean of the
# two places' means follows the work itself.
if [ "$concurrent" = 1 ] && [ "${#ratios[@]}" -ge 2 ]; then
	printf '%s\n' "${ratios[@]}" | awk -v who="$([ -n "$against" ] && echo new/old || echo on/off)" '
		$1 != "" { if (NR % 2) { odd += $1; no++ } else { even += $1; ne++ } }
		END { if (no && ne) printf "%s by place: :5072 %.2f (pairs: %d), :5070 %.2f (pairs: %d), mean of the places %.2f\n", who, odd / no, no, even / ne, ne, (odd / no + even / ne) / 2 }' |
		tee -a "$out/summary.txt"
fi
if [ "$max" = 1 ]; then
	o=$(run "$([ -n "$against" ] && echo old || echo off)" off-max 5070 25000 --duration 5 --confirm 10 --call-rates "2000 4000 6000 8000")
	n=$(run on on-max 5070 25000 --duration 5 --confirm 10 --call-rates "2000 4000 6000 8000")
	om=$(field "$o" max_cps) nm=$(field "$n" max_cps)
	printf 'max calls/s: off %s (cpu/1k %s, steal %s%%), on %s (cpu/1k %s, steal %s%%), on/off %s\n' \
		"$om" "$(field "$o" proxy_cpu_s_per_1k_calls)" "$(field "$o" steal_pct)" \
		"$nm" "$(field "$n" proxy_cpu_s_per_1k_calls)" "$(field "$n" steal_pct)" \
		"$(awk -v a="$nm" -v b="$om" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "NA" }')" | tee -a "$out/summary.txt"
fi
