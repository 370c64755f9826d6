package cmdline

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

// enum is a string flag that takes one of a few values; anything else is
// a usage error when the flag is parsed.
type enum struct {
	p       *string
	allowed []string
}

// Enum defines a flag on fs that accepts only the allowed values, with
// value as its default; help shows them as the flag's type.
func Enum(fs *pflag.FlagSet, p *string, name, value, usage string, allowed ...string) {
	*p = value
	fs.Var(&enum{p: p, allowed: allowed}, name, usage)
}

func (e *enum) String() string { return *e.p }
func (e *enum) Type() string   { return strings.Join(e.allowed, "|") }
func (e *enum) Set(s string) error {
	if !slices.Contains(e.allowed, s) {
		return fmt.Errorf("use %s", orList(e.allowed))
	}
	*e.p = s
	return nil
}

// Checked defines a string flag on fs whose value must pass check.
func Checked(fs *pflag.FlagSet, p *string, name, value, typ, usage string, check func(string) error) {
	*p = value
	fs.Var(&checkValue{p: p, typ: typ, check: check}, name, usage)
}

// checkValue is a string flag checked by a function when it is parsed.
type checkValue struct {
	p     *string
	typ   string
	check func(string) error
}

func (c *checkValue) String() string { return *c.p }
func (c *checkValue) Type() string   { return c.typ }
func (c *checkValue) Set(s string) error {
	if err := c.check(s); err != nil {
		return err
	}
	*c.p = s
	return nil
}

func orList(v []string) string {
	if len(v) < 2 {
		return strings.Join(v, "")
	}
	return strings.Join(v[:len(v)-1], ", ") + " or " + v[len(v)-1]
}

// IntAtLeast defines an int flag on fs whose value must be at least least:
// a smaller one is a usage error when the flag is parsed.
func IntAtLeast(fs *pflag.FlagSet, p *int, name string, value, least int, usage string) {
	*p = value
	fs.Var(&intAtLeast{p: p, least: least}, name, usage)
}

type intAtLeast struct {
	p     *int
	least int
}

func (v *intAtLeast) String() string { return strconv.Itoa(*v.p) }
func (v *intAtLeast) Type() string   { return "int" }
func (v *intAtLeast) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < v.least {
		return fmt.Errorf("use a whole number of at least %d", v.least)
	}
	*v.p = n
	return nil
}
