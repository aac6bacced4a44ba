package pipeline

import (
	"errors"
	"testing"
	"time"
)

func mustWindows(t *testing.T, p WindowPolicy) *Windows {
	t.Helper()
	w, err := p.Compile()
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func at(t *testing.T, zone, s string) time.Time {
	t.Helper()
	loc, err := time.LoadLocation(zone)
	if err != nil {
		t.Fatal(err)
	}
	v, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var prodPolicy = WindowPolicy{Allow: []WindowSpec{{Cron: "0 2 * * 1-5", Duration: 2 * time.Hour, Zone: "Europe/Berlin"}}}

func TestWindowNext(t *testing.T) {
	w := mustWindows(t, prodPolicy)
	for _, tc := range []struct {
		name, now, wantStart, wantEnd string
	}{
		{"before, same day", "2025-01-07 01:00", "2025-01-07 02:00", "2025-01-07 04:00"}, // Tue
		{"inside", "2025-01-07 03:30", "2025-01-07 03:30", "2025-01-07 04:00"},
		{"after, next day", "2025-01-07 04:00", "2025-01-08 02:00", "2025-01-08 04:00"},
		{"friday after, skips weekend", "2025-01-10 05:00", "2025-01-13 02:00", "2025-01-13 04:00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			iv, err := w.Next(at(t, "Europe/Berlin", tc.now))
			if err != nil {
				t.Fatal(err)
			}
			if !iv.Start.Equal(at(t, "Europe/Berlin", tc.wantStart)) || !iv.End.Equal(at(t, "Europe/Berlin", tc.wantEnd)) {
				t.Errorf("Next = %s..%s, want %s..%s", iv.Start, iv.End, tc.wantStart, tc.wantEnd)
			}
		})
	}
	if got := w.Describe(at(t, "Europe/Berlin", "2025-01-07 02:00")); got != "Tue 02:00 CET" {
		t.Errorf("Describe = %q", got)
	}
}

// The 02:00 Berlin window is 01:00 UTC in winter and 00:00 UTC in summer;
// DST began on Sunday 2025-03-30.
func TestWindowAcrossDST(t *testing.T) {
	w := mustWindows(t, prodPolicy)
	iv, err := w.Next(time.Date(2025, 3, 28, 12, 0, 0, 0, time.UTC)) // Friday noon
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2025, 3, 31, 0, 0, 0, 0, time.UTC); !iv.Start.Equal(want) {
		t.Errorf("after DST start = %s, want %s", iv.Start.UTC(), want)
	}
	if got := w.Describe(iv.Start); got != "Mon 02:00 CEST" {
		t.Errorf("Describe = %q", got)
	}
	iv, err = w.Next(time.Date(2025, 3, 27, 12, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2025, 3, 28, 1, 0, 0, 0, time.UTC); !iv.Start.Equal(want) {
		t.Errorf("before DST = %s, want %s", iv.Start.UTC(), want)
	}
	// Autumn: DST ends Sunday 2025-10-26; Monday's window is 01:00 UTC again.
	iv, _ = w.Next(time.Date(2025, 10, 25, 12, 0, 0, 0, time.UTC))
	if want := time.Date(2025, 10, 27, 1, 0, 0, 0, time.UTC); !iv.Start.Equal(want) {
		t.Errorf("after DST end = %s, want %s", iv.Start.UTC(), want)
	}
}

func TestFreezeInsideAllowWindow(t *testing.T) {
	p := prodPolicy
	p.Deny = []FreezeSpec{
		// A recurring freeze from 02:30 for 30 minutes, every day.
		{WindowSpec: WindowSpec{Cron: "30 2 * * *", Duration: 30 * time.Minute, Zone: "Europe/Berlin"}, Reason: "backup"},
		// A one-off freeze covering all of Wednesday's window.
		{From: at(t, "Europe/Berlin", "2025-01-08 00:00"), To: at(t, "Europe/Berlin", "2025-01-09 00:00"), Reason: "release party"},
	}
	w := mustWindows(t, p)
	until, open := w.OpenAt(at(t, "Europe/Berlin", "2025-01-07 02:10"))
	if !open || !until.Equal(at(t, "Europe/Berlin", "2025-01-07 02:30")) {
		t.Errorf("OpenAt 02:10 = %v until %s, want open until the freeze at 02:30", open, until)
	}
	if _, open := w.OpenAt(at(t, "Europe/Berlin", "2025-01-07 02:45")); open {
		t.Error("open during the recurring freeze")
	}
	if fz, ok := w.Frozen(at(t, "Europe/Berlin", "2025-01-07 02:45")); !ok || fz.Reason != "backup" {
		t.Errorf("Frozen = %v %v", fz, ok)
	}
	iv, err := w.Next(at(t, "Europe/Berlin", "2025-01-07 02:40"))
	if err != nil || !iv.Start.Equal(at(t, "Europe/Berlin", "2025-01-07 03:00")) {
		t.Errorf("Next during freeze = %v %v, want 03:00 after the freeze", iv.Start, err)
	}
	iv, err = w.Next(at(t, "Europe/Berlin", "2025-01-07 05:00"))
	if err != nil || !iv.Start.Equal(at(t, "Europe/Berlin", "2025-01-09 02:00")) {
		t.Errorf("Next over the one-off freeze = %v %v, want Thursday 02:00", iv.Start, err)
	}
}

func TestWindowImmediateAndErrors(t *testing.T) {
	w := mustWindows(t, WindowPolicy{Immediate: true})
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	if iv, err := w.Next(now); err != nil || !iv.Start.Equal(now) {
		t.Errorf("immediate Next = %v %v", iv, err)
	}
	always := mustWindows(t, WindowPolicy{Immediate: true, Deny: []FreezeSpec{{WindowSpec: WindowSpec{Cron: "* * * * *", Duration: time.Hour}}}})
	if _, err := always.Next(now); !errors.Is(err, ErrNoWindow) {
		t.Errorf("always frozen: err = %v, want ErrNoWindow", err)
	}
	for _, p := range []WindowPolicy{
		{},
		{Allow: []WindowSpec{{Cron: "bad", Duration: time.Hour}}},
		{Allow: []WindowSpec{{Cron: "0 2 * * *"}}},
		{Allow: []WindowSpec{{Cron: "0 2 * * *", Duration: time.Hour, Zone: "Mars/Base"}}},
		{Immediate: true, Deny: []FreezeSpec{{Reason: "no dates"}}},
	} {
		if _, err := p.Compile(); err == nil {
			t.Errorf("Compile(%+v) succeeded", p)
		}
	}
}
