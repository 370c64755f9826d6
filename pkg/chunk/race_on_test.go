//go:build race

package chunk

// raceEnabled: the race detector makes sync.Pool drop a quarter of what is
// put back, so allocation counts are not meaningful under it.
const raceEnabled = true
