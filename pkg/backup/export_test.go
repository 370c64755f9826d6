package backup

import "time"

// SetRacyWindow sets racyWindow and fineRacyWindow for a test and returns
// the function that puts them back.
func SetRacyWindow(d time.Duration) func() {
	old, oldFine := racyWindow, fineRacyWindow
	racyWindow, fineRacyWindow = d, d
	return func() { racyWindow, fineRacyWindow = old, oldFine }
}

// TrustFreshFiles lets a test's backup cache a file it wrote a moment
// before (fineRacyWindow 0: as if the filesystem's clock were exact), and
// returns the function that puts the window back.
func TrustFreshFiles() func() {
	old := fineRacyWindow
	fineRacyWindow = 0
	return func() { fineRacyWindow = old }
}

// Listed is how many directories the scan listed.
func (s *Scan) Listed() int { return s.listed }

// SameAsCache reports whether a backup of root with cache and this scan
// takes the cached snapshot whole.
func (s *Scan) SameAsCache(root string, c *Cache) bool { return s.sameAsCache(root, c) }

// FitTree is fitTree, for the big-file tests.
var FitTree = fitTree
