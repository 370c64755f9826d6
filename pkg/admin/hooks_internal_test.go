package admin

import "time"

// SetRequestReadTimeout sets how long a request's body may take to
// arrive, for a test; it returns the function that puts it back.
func SetRequestReadTimeout(d time.Duration) func() {
	old := requestReadTimeout
	requestReadTimeout = d
	return func() { requestReadTimeout = old }
}
