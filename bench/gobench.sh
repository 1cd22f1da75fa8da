#!/usr/bin/env bash
# Runs Go benchmarks and prints the CPU steal and load seen during the run,
# so each figure can be read against how noisy the host was.
#   bench/gobench.sh ./sip 'ForwardInvite|ParseInvite' [count]
set -euo pipefail
cd "$(dirname "$0")/.."
pkg=${1:-./sip}
pat=${2:-.}
count=${3:-5}
read -r _ u1 n1 s1 i1 w1 q1 sq1 st1 _ < /proc/stat
go test "$pkg" -run '^$' -bench "$pat" -benchmem -count "$count"
read -r _ u2 n2 s2 i2 w2 q2 sq2 st2 _ < /proc/stat
total=$(( (u2+n2+s2+i2+w2+q2+sq2+st2) - (u1+n1+s1+i1+w1+q1+sq1+st1) ))
steal=$(( st2 - st1 ))
busy=$(( (u2+n2+s2) - (u1+n1+s1) ))
awk -v s="$steal" -v t="$total" -v b="$busy" 'BEGIN { if (t == 0) t = 1; printf "steal_pct=%.1f busy_pct=%.1f (all CPUs, during the run)\n", 100*s/t, 100*b/t }'
