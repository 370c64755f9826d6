//go:build !race

package offsite

const raceEnabled = false
