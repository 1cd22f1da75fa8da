//go:build race

package calllog

const raceEnabled = true
