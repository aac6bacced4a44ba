package pipeline

import (
	"errors"
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
)

// ErrNoWindow means no allow window opens within the search horizon (a
// year), e.g. every window is frozen.
var ErrNoWindow = errors.New("no deploy window opens within a year")

// WindowSpec is one recurring window: it opens at each fire of Cron (five
// fields, minute first) in Zone and stays open for Duration.
type WindowSpec struct {
	Cron     string
	Duration time.Duration
	Zone     string // IANA name; "" means UTC
}

// FreezeSpec is a deny window: recurring (Cron, Duration, Zone) or one-off
// (From, To). Reason is shown wherever a ticket waits because of it.
type FreezeSpec struct {
	WindowSpec
	From, To time.Time
	Reason   string
}

// WindowPolicy is when an environment (or one app on it) may be deployed.
type WindowPolicy struct {
	// Immediate means always open (dev), apart from freezes.
	Immediate bool
	Allow     []WindowSpec
	Deny      []FreezeSpec
	// Jitter is the most a run is delayed past its window's opening, at
	// random, so that many tickets do not start at the same second.
	Jitter time.Duration
}

// Windows is a compiled WindowPolicy. Its methods are pure functions of
// the time passed in: no clock is read.
type Windows struct {
	immediate bool
	allow     []window
	deny      []window
	jitter    time.Duration
}

type window struct {
	sched  cron.Schedule
	loc    *time.Location
	dur    time.Duration
	from   time.Time // one-off
	to     time.Time
	reason string
}

// Interval is [Start, End).
type Interval struct {
	Start, End time.Time
	Reason     string // for a freeze
}

var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

func compileWindow(w WindowSpec, where string) (window, error) {
	loc := time.UTC
	if w.Zone != "" {
		l, err := time.LoadLocation(w.Zone)
		if err != nil {
			return window{}, fmt.Errorf("%s.zone %q: %w", where, w.Zone, err)
		}
		loc = l
	}
	s, err := cronParser.Parse(w.Cron)
	if err != nil {
		return window{}, fmt.Errorf("%s.cron %q: %w", where, w.Cron, err)
	}
	if w.Duration <= 0 {
		return window{}, fmt.Errorf("%s.duration: must be positive, got %s", where, w.Duration)
	}
	return window{sched: s, loc: loc, dur: w.Duration}, nil
}

// Compile checks p and returns its Windows. Errors name the field.
func (p WindowPolicy) Compile() (*Windows, error) {
	w := &Windows{immediate: p.Immediate, jitter: p.Jitter}
	if !p.Immediate && len(p.Allow) == 0 {
		return nil, errors.New("windows: set immediate or at least one allow window")
	}
	if p.Jitter < 0 {
		return nil, fmt.Errorf("windows.jitter: must not be negative, got %s", p.Jitter)
	}
	for i, a := range p.Allow {
		cw, err := compileWindow(a, fmt.Sprintf("windows.allow[%d]", i))
		if err != nil {
			return nil, err
		}
		w.allow = append(w.allow, cw)
	}
	for i, d := range p.Deny {
		where := fmt.Sprintf("windows.deny[%d]", i)
		if d.Cron == "" {
			if d.From.IsZero() || !d.To.After(d.From) {
				return nil, fmt.Errorf("%s: set cron+duration, or from and a later to", where)
			}
			w.deny = append(w.deny, window{from: d.From, to: d.To, reason: d.Reason})
			continue
		}
		cw, err := compileWindow(d.WindowSpec, where)
		if err != nil {
			return nil, err
		}
		cw.reason = d.Reason
		w.deny = append(w.deny, cw)
	}
	return w, nil
}

// Jitter is the configured maximum delay.
func (w *Windows) Jitter() time.Duration { return w.jitter }

// occurrence returns the interval of win containing t, if any.
func (win window) occurrence(t time.Time) (Interval, bool) {
	if win.sched == nil {
		return Interval{Start: win.from, End: win.to, Reason: win.reason}, !t.Before(win.from) && t.Before(win.to)
	}
	// The latest fire at or before t is the first fire after t-dur (if it
	// is not after t); the earliest such fire gives the longest interval.
	for f := win.sched.Next(t.Add(-win.dur).Add(-time.Second).In(win.loc)); !f.IsZero() && !f.After(t); f = win.sched.Next(f) {
		if end := f.Add(win.dur); t.Before(end) {
			return Interval{Start: f, End: end, Reason: win.reason}, true
		}
	}
	return Interval{}, false
}

// next returns the start of win's first occurrence after t.
func (win window) next(t time.Time) (time.Time, bool) {
	if win.sched == nil {
		return win.from, win.from.After(t)
	}
	n := win.sched.Next(t.In(win.loc))
	return n, !n.IsZero()
}

// Frozen reports the freeze in force at t, if any.
func (w *Windows) Frozen(t time.Time) (Interval, bool) {
	for _, d := range w.deny {
		if iv, ok := d.occurrence(t); ok {
			return iv, true
		}
	}
	return Interval{}, false
}

// allowAt returns the allow interval containing t (ignoring freezes).
func (w *Windows) allowAt(t time.Time) (Interval, bool) {
	if w.immediate {
		return Interval{Start: t, End: t.Add(100 * 365 * 24 * time.Hour)}, true
	}
	var best Interval
	found := false
	for _, a := range w.allow {
		if iv, ok := a.occurrence(t); ok && (!found || iv.End.After(best.End)) {
			best, found = iv, true
		}
	}
	return best, found
}

// OpenAt reports whether deploys may run at t, and until when (the end of
// the allow window, cut short by the next freeze starting in it).
func (w *Windows) OpenAt(t time.Time) (until time.Time, open bool) {
	if _, frozen := w.Frozen(t); frozen {
		return time.Time{}, false
	}
	iv, ok := w.allowAt(t)
	if !ok {
		return time.Time{}, false
	}
	end := iv.End
	for _, d := range w.deny {
		if s, ok := d.next(t); ok && s.Before(end) {
			end = s
		}
	}
	return end, true
}

// Next returns the first open interval at or after t: the one in force at
// t, or the next to open. Freezes inside an allow window move the start
// past the freeze. ErrNoWindow when nothing opens within a year.
func (w *Windows) Next(t time.Time) (Interval, error) {
	horizon := t.AddDate(1, 0, 0)
	cur := t
	for i := 0; i < 10000 && cur.Before(horizon); i++ {
		if fz, frozen := w.Frozen(cur); frozen {
			cur = fz.End
			continue
		}
		if end, open := w.OpenAt(cur); open {
			return Interval{Start: cur, End: end}, nil
		}
		// Closed: jump to the earliest allow opening after cur.
		var nxt time.Time
		for _, a := range w.allow {
			if s, ok := a.next(cur); ok && (nxt.IsZero() || s.Before(nxt)) {
				nxt = s
			}
		}
		if nxt.IsZero() {
			break
		}
		cur = nxt
	}
	return Interval{}, ErrNoWindow
}

// Describe is the human line for a window start, e.g. "Tue 02:00 CET", in
// the zone of the first allow window (UTC for immediate policies).
func (w *Windows) Describe(t time.Time) string {
	loc := time.UTC
	if len(w.allow) > 0 {
		loc = w.allow[0].loc
	}
	return t.In(loc).Format("Mon 15:04 MST")
}
