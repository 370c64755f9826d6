package backup

import "time"

// SetRacyWindow sets racyWindow for a test and returns the function that
// puts it back.
func SetRacyWindow(d time.Duration) func() {
	old := racyWindow
	racyWindow = d
	return func() { racyWindow = old }
}

// Listed is how many directories the scan listed; Trusted how many it took
// as unchanged on their own lstat.
func (s *Scan) Listed() int  { return s.listed }
func (s *Scan) Trusted() int { return len(s.trusted) }

// AgeVerification moves the cache's record of the last run that looked at
// every file back by d.
func (c *Cache) AgeVerification(d time.Duration) { c.verified -= int64(d / time.Second) }
