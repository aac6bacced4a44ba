package config

import (
	"errors"
	"strings"
	"testing"
)

// TestDeploysErrorsNameFileLine: each mistake under deploys: names the
// file, the line and the key path.
func TestDeploysErrorsNameFileLine(t *testing.T) {
	head := "deploys:\n  groups: {ops: [alice]}\n  environments:\n    prod:\n"
	cases := []struct {
		name, yaml string
		line       int
		key, msg   string
	}{
		{"bad cron", "      windows:\n        allow:\n          - {cron: \"0 25 * * *\", duration: 1h}\n", 7,
			"deploys.environments.prod.windows.allow.0.cron", "five fields"},
		{"no duration", "      windows:\n        allow:\n          - cron: \"0 2 * * *\"\n", 7,
			"deploys.environments.prod.windows.allow.0.duration", "must be positive"},
		{"bad zone", "      windows:\n        allow:\n          - cron: \"0 2 * * *\"\n            duration: 1h\n            zone: Mars/Olympus\n", 9,
			"deploys.environments.prod.windows.allow.0.zone", "unknown time zone"},
		{"no window", "      windows: {jitter: 1m}\n", 5, "deploys.environments.prod.windows", "set immediate"},
		{"bad freeze date", "      windows:\n        immediate: true\n        deny:\n          - {from: 2025-12-24, to: soon}\n", 8,
			"deploys.environments.prod.windows.deny.0.to", "want RFC 3339"},
		{"freeze backwards", "      windows:\n        immediate: true\n        deny:\n          - from: 2025-12-24\n            to: 2025-12-20\n", 9,
			"deploys.environments.prod.windows.deny.0.to", "not after"},
		{"unknown group", "      finish:\n        required: 1\n        groups: [ops, dba]\n", 7,
			"deploys.environments.prod.finish.groups.1", `group "dba"`},
		{"negative approvals", "      approval:\n        required: -1\n", 6, "deploys.environments.prod.approval.required", "negative"},
		{"bad hold mode", "      hold:\n        mode: forever\n", 6, "deploys.environments.prod.hold.mode", "want stay"},
		{"per-app override", "      apps:\n        web:\n          hold: {mode: auto-finish}\n", 7,
			"deploys.environments.prod.apps.web.hold.auto_finish_after", "positive"},
		{"secret", "      notify:\n        email:\n          addr: smtp:25\n          to: [a@example.com]\n          password: {env: DOCKMASTER_TEST_UNSET_VAR}\n", 9,
			"deploys.environments.prod.notify.email.password", "not set"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("dm.yaml", []byte(head+c.yaml))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("want *config.Error, got %v", err)
			}
			if ce.File != "dm.yaml" || ce.Line != c.line || ce.Key != c.key || !strings.Contains(ce.Msg, c.msg) {
				t.Fatalf("got %#v (%v), want line %d key %q msg ~%q", ce, err, c.line, c.key, c.msg)
			}
		})
	}
	ok := head + "      windows:\n        allow: [{cron: \"0 2 * * 1-5\", duration: 2h, zone: Europe/Berlin}]\n        deny: [{from: 2025-12-24, to: 2025-12-27}]\n      finish: {required: 1, groups: [ops]}\n      hold: {mode: auto-finish, auto_finish_after: 30m}\n"
	if _, err := Parse("dm.yaml", []byte(ok)); err != nil {
		t.Fatalf("valid deploys section: %v", err)
	}
}
