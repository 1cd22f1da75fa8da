//go:build linux

package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// clkTck is USER_HZ, the unit of /proc/*/stat and /proc/stat times; it is
// 100 on every Linux ABI Go supports.
const clkTck = 100

// sample is what /proc says at one moment.
type sample struct {
	at         int64  // nanotime
	relay, gen uint64 // utime+stime of the relay and of this process, ticks
	idle       uint64 // idle + iowait of all CPUs
	steal      uint64
}

func snapshot(relayPID int) sample {
	s := sample{at: nanotime(), relay: procCPU(strconv.Itoa(relayPID)), gen: procCPU("self")}
	if f, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(f), "\n")
		fs := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
		if len(fs) > 8 && fs[0] == "cpu" {
			idle, _ := strconv.ParseUint(fs[4], 10, 64)
			iowait, _ := strconv.ParseUint(fs[5], 10, 64)
			steal, _ := strconv.ParseUint(fs[8], 10, 64)
			s.idle, s.steal = idle+iowait, steal
		}
	}
	return s
}

// procCPU is utime+stime of a process (fields 14 and 15 of stat(5)),
// which is scheduler runtime and excludes steal.
func procCPU(pid string) uint64 {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces
	if i < 0 {
		return 0
	}
	fs := strings.Fields(s[i+1:]) // fs[0] is field 3 (state)
	if len(fs) < 13 {
		return 0
	}
	u, _ := strconv.ParseUint(fs[11], 10, 64)
	st, _ := strconv.ParseUint(fs[12], 10, 64)
	return u + st
}

// cpuStats fills the CPU figures of res from two samples wall seconds
// apart. Busy cores are computed from what was not idle or stolen,
// because the tick-sampled user/system columns undercount on this kind of
// guest (relay-limits.md §1).
func cpuStats(res *result, a, b sample, wall float64) {
	ticks := wall * clkTck
	ncpu := float64(runtime.NumCPU())
	res.RelayCores = round2(float64(b.relay-a.relay) / ticks)
	res.GenCores = round2(float64(b.gen-a.gen) / ticks)
	res.BusyCores = round2(ncpu - float64((b.idle-a.idle)+(b.steal-a.steal))/ticks)
	res.StealPct = round2(100 * float64(b.steal-a.steal) / (ncpu * ticks))
	res.OtherCores = round2(res.BusyCores - res.RelayCores - res.GenCores)
}

func round2(v float64) float64 {
	f, _ := strconv.ParseFloat(fmt.Sprintf("%.2f", v), 64)
	return f
}

// udpCounters returns the kernel's UDP RcvbufErrors (/proc/net/snmp):
// datagrams dropped because a socket's receive queue was full, in the
// relay or in the generator.
func udpCounters() int64 {
	f, err := os.Open("/proc/net/snmp")
	if err != nil {
		return 0
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) == 0 || fs[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = fs
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(fs) {
				v, _ := strconv.ParseInt(fs[i], 10, 64)
				return v
			}
		}
	}
	return 0
}
