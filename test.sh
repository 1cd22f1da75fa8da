#!/usr/bin/env bash
# Runs the whole sipedge test suite. Installs what the tests need when it is
# missing (Debian packages; needs root or sudo), then: gofmt, go vet, unit and
# end-to-end tests with the race detector, and a short run of every fuzz
# target.
#
#   ./test.sh            everything (what CI runs)
#   FUZZTIME=60s ./test.sh   longer fuzzing
#   ./test.sh -short     unit tests only (no installs, no fuzzing)
set -euo pipefail
cd "$(dirname "$0")"

FUZZTIME=${FUZZTIME:-5s}

need_pkgs=()
command -v sipp >/dev/null 2>&1 || need_pkgs+=(sip-tester)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || need_pkgs+=(dnsmasq-base)
command -v kamailio >/dev/null 2>&1 || [ -x /usr/sbin/kamailio ] || need_pkgs+=(kamailio)
# The NAT lab (test/netlab, ../shared/netlab): namespaces, firewalls, a
# real phone, packet captures.
command -v ip >/dev/null 2>&1 || need_pkgs+=(iproute2)
command -v nft >/dev/null 2>&1 || need_pkgs+=(nftables)
command -v tcpdump >/dev/null 2>&1 || need_pkgs+=(tcpdump)
command -v baresip >/dev/null 2>&1 || need_pkgs+=(baresip)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
# The survival lab test reads sipedge's API inside the gateway namespace.
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
# The scanner every SIP server on the Internet meets (test/e2e/sipvicious_test.go).
command -v svwar >/dev/null 2>&1 || need_pkgs+=(sipvicious)
# The operators' ladder tool as HEP collector (test/e2e/hep_test.go).
command -v sngrep >/dev/null 2>&1 || need_pkgs+=(sngrep)
# The browser that drives the operations page (test/e2e/webpage_test.go).
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
# JsSIP for the browser over WebSocket (test/e2e/websocket_test.go): npm
# fetches it, with esbuild to bundle it, into the user's cache directory.
command -v npm >/dev/null 2>&1 || need_pkgs+=(npm)
# The shared store of a cluster of instances (test/e2e/cluster_test.go).
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || need_pkgs+=(redis-sentinel)

install_pkgs() {
	[ $# -gt 0 ] || return 0
	local sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	echo "test.sh: installing Debian packages: $*"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if [ "${1:-}" = "-short" ]; then
	go test -short -count=1 ./...
	exit 0
fi

install_pkgs "${need_pkgs[@]+"${need_pkgs[@]}"}"

echo "== gofmt (at ${SECONDS} s)"
bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$bad" ]; then
	echo "gofmt: not formatted:"; echo "$bad"; exit 1
fi

echo "== go vet (at ${SECONDS} s)"
go vet ./...

echo "== go test -race (at ${SECONDS} s)"
go test -race -count=1 -timeout 10m ./...

echo "== fuzz ($FUZZTIME per target, at ${SECONDS} s)"
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
		echo "-- $pkg $target"
		# The whole output when a run fails (the failing input, or the
		# fuzzing engine's own error), its last lines otherwise.
		if ! out=$(go test -run='^$' -fuzz="^${target}\$" -fuzztime="$FUZZTIME" "$pkg" 2>&1); then
			# The engine sometimes fails to stop its workers in time on a
			# loaded machine ("context deadline exceeded", no failing
			# input; the coordinator race of golang/go#75804, fixed in Go
			# 1.27): that found nothing, so run the target once more.
			if printf '%s' "$out" | grep -q 'context deadline exceeded' && ! printf '%s' "$out" | grep -q 'Failing input written'; then
				echo "   (the fuzzing engine did not stop in time; once more)"
				out=$(go test -run='^$' -fuzz="^${target}\$" -fuzztime="$FUZZTIME" "$pkg" 2>&1) || {
					printf '%s\n' "$out" | tail -60
					exit 1
				}
			else
				printf '%s\n' "$out" | tail -60
				exit 1
			fi
		fi
		printf '%s\n' "$out" | tail -3
	done
done
echo "test.sh: all passed in ${SECONDS} s"
