// Package units parses and formats byte sizes for configuration files,
// command lines and pages. It sits below every other package of the module
// (pkg/ may import it; it imports only the standard library).
package units

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ParseSize parses a size with an optional unit (B, KB, MB, GB, TB, KiB,
// MiB, GiB, TiB).
func ParseSize(text string) (int64, error) {
	t := strings.TrimSpace(text)
	i := len(t)
	for i > 0 && (t[i-1] < '0' || t[i-1] > '9') && t[i-1] != '.' {
		i--
	}
	num, unit := strings.TrimSpace(t[:i]), strings.ToLower(strings.TrimSpace(t[i:]))
	mult := map[string]float64{"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}[unit]
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || mult == 0 || f < 0 || math.IsNaN(f) {
		return 0, fmt.Errorf("%q is not a size (examples: 512MiB, 2GB, 1048576)", text)
	}
	if f*mult >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is larger than any size this program can use", text)
	}
	return int64(f * mult), nil
}

// Bytes formats a byte count for people.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
