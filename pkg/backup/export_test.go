package backup

import "time"

// SetRacyWindow sets racyWindow for a test and returns the function that
// puts it back.
func SetRacyWindow(d time.Duration) func() {
	old := racyWindow
	racyWindow = d
	return func() { racyWindow = old }
}

// Listed is how many directories the scan listed.
func (s *Scan) Listed() int { return s.listed }

// SameAsCache reports whether a backup of root with cache and this scan
// takes the cached snapshot whole.
func (s *Scan) SameAsCache(root string, c *Cache) bool { return s.sameAsCache(root, c) }
