//go:build race

package registrar

const raceEnabled = true
