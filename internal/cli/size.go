package cli

import "github.com/xs-backup/xs-backup/internal/units"

// ParseSize parses a size with an optional unit (see units.ParseSize).
func ParseSize(text string) (int64, error) { return units.ParseSize(text) }

// Bytes formats a byte count for people (see units.Bytes).
func Bytes(n int64) string { return units.Bytes(n) }
