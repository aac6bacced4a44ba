package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// TestEveryCommandHelps: each command defines its flags and answers --help
// with its usage, without touching the network or the disk.
func TestEveryCommandHelps(t *testing.T) {
	for _, c := range commands() {
		var out, errb bytes.Buffer
		code := run([]string{"dockmaster", c.name, "--help"}, &out, &errb)
		text := out.String() + errb.String()
		if code != exitOK && code != exitUsage || !strings.Contains(strings.ToLower(text), "usage") {
			t.Errorf("%s --help: exit %d\n%s", c.name, code, text)
		}
	}
}

// TestParseArgsFlagsAnywhere: flags, with or without values, parse before
// and after the positional arguments ("container stop web-1 -e prod").
func TestParseArgsFlagsAnywhere(t *testing.T) {
	fs := newFlags("t", "t", io.Discard)
	out := fs.String("o", "table", "")
	admin := fs.Bool("admin", false, "")
	env := fs.String("e", "", "")
	pos, err := parseArgs(fs, []string{"-e", "prod", "bob", "-o", "json", "alice", "--admin"})
	if err != nil || strings.Join(pos, ",") != "bob,alice" || *out != "json" || !*admin || *env != "prod" {
		t.Fatalf("pos %v err %v: -o %q --admin %v -e %q", pos, err, *out, *admin, *env)
	}
	if _, err := parseArgs(newFlags("t", "t", io.Discard), []string{"x", "--nope"}); exitCode(err, io.Discard) != exitUsage {
		t.Fatalf("unknown flag after a positional: %v, want a usage error", err)
	}
}
