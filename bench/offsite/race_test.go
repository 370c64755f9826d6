//go:build race

package offsite

// raceEnabled: the tiny run is skipped under the race detector.
const raceEnabled = true
