//go:build race

package server_test

// raceEnabled: the tests of very large files measure scale, not races;
// under the race detector they take minutes, and make unit runs them
// without it.
const raceEnabled = true
