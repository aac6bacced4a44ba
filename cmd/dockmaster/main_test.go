package main

import (
	"bytes"
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
