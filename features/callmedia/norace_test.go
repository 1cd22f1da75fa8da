//go:build !race

package callmedia_test

const raceEnabled = false
