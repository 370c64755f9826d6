//go:build race

package traffic

// raceEnabled: under the race detector the scaled morning is skipped (it
// would take many minutes); make unit runs it again without.
const raceEnabled = true
