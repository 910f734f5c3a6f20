package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
)

// newFlags is a verb's flag set, printing help to stderr on -h or an error.
func newFlags(name string, stderr io.Writer, help string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "%s\n", help)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; when it returns ok false, the command exits with
// code: 0 for -h (help was printed), 2 for bad flags.
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	err := fs.Parse(flagsFirst(fs, args))
	switch {
	case err == nil:
		return exitOK, true
	case errors.Is(err, flag.ErrHelp):
		return exitOK, false
	default:
		return exitUsage, false
	}
}

// flagsFirst moves flags (and their values) before the positional
// arguments, so `golb scale web 3 --admin ADDR` works like
// `golb scale --admin ADDR web 3`. "--" ends the flags as usual.
func flagsFirst(fs *flag.FlagSet, args []string) []string {
	var flags, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' || isNumber(a) { // "-1" is a (bad) count, not a flag
			rest = append(rest, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue // Parse reports it
		}
		if o, ok := f.Value.(*optionalValue); ok {
			// `--admin ADDR`: the next argument is the value when it
			// looks like one, else `--admin` stands alone.
			if i+1 < len(args) && o.accepts(args[i+1]) {
				i++
				flags[len(flags)-1] = a + "=" + args[i]
			}
			continue
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		if i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	if len(rest) > 0 && len(rest[0]) > 1 && rest[0][0] == '-' && isNumber(rest[0]) {
		flags = append(flags, "--") // so that Parse leaves "-1" to the command
	}
	return append(flags, rest...)
}

func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

// optionalValue is a flag whose value may be left out: `--admin` alone
// means "yes, at the default", `--admin=ADDR` and `--admin ADDR` give the
// value (flagsFirst takes the next argument when accepts it).
type optionalValue struct {
	set     bool
	value   string
	accepts func(string) bool
}

// optionalFlag defines an optionalValue flag with default def.
func optionalFlag(fs *flag.FlagSet, name, def, usage string, accepts func(string) bool) *optionalValue {
	v := &optionalValue{value: def, accepts: accepts}
	fs.Var(v, name, usage)
	return v
}

func (v *optionalValue) String() string {
	if v == nil {
		return ""
	}
	return v.value
}

func (v *optionalValue) Set(s string) error {
	switch s {
	case "true": // the flag alone
		v.set = true
	case "false":
		v.set = false
	default:
		v.set, v.value = true, s
	}
	return nil
}

// IsBoolFlag lets the flag stand alone.
func (v *optionalValue) IsBoolFlag() bool { return true }

// isAddress reports whether s is HOST:PORT with a numeric port, as an
// admin address is (and a config file name is not).
func isAddress(s string) bool {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	_, err = strconv.ParseUint(port, 10, 16)
	return err == nil
}
