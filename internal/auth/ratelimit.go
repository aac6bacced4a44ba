package auth

import (
	"sync"
	"time"
)

// limiter throttles failed logins per key (a client address or a user
// name): perMinute failures within a minute lock the key for a minute,
// and each further lock-out doubles, up to an hour. It holds at most
// maxKeys keys; when full it forgets unlocked keys, idle ones first, and
// when every key is locked it stops tracking new ones rather than drop a
// lock: a flood of new names must not wash out the lock on a real one.
// (Filling the per-user table needs thousands of addresses, since each
// address is itself throttled.)
type limiter struct {
	mu        sync.Mutex
	perMinute int
	maxKeys   int
	m         map[string]*attempts
}

type attempts struct {
	windowStart time.Time
	fails       int
	strikes     int // lock-outs so far; sets the back-off
	lockedUntil time.Time
	last        time.Time
}

const (
	limitWindow = time.Minute
	maxLockout  = time.Hour
)

func newLimiter(perMinute, maxKeys int) *limiter {
	return &limiter{perMinute: perMinute, maxKeys: maxKeys, m: map[string]*attempts{}}
}

// wait is how long key must wait before trying again (0: go ahead).
func (l *limiter) wait(key string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a := l.m[key]; a != nil && now.Before(a.lockedUntil) {
		return a.lockedUntil.Sub(now)
	}
	return 0
}

// fail records a failed attempt.
func (l *limiter) fail(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.m[key]
	if a == nil {
		if !l.makeRoom(now) {
			return
		}
		a = &attempts{windowStart: now}
		l.m[key] = a
	}
	if now.Sub(a.last) > maxLockout { // quiet for long: forgive old strikes
		a.strikes = 0
	}
	a.last = now
	if now.Sub(a.windowStart) > limitWindow {
		a.windowStart, a.fails = now, 0
	}
	a.fails++
	if a.fails >= l.perMinute {
		lock := min(limitWindow<<a.strikes, maxLockout)
		a.strikes = min(a.strikes+1, 10)
		a.lockedUntil = now.Add(lock)
		a.windowStart, a.fails = now, 0
	}
}

// reset forgets key (after a successful login of that user).
func (l *limiter) reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, key)
}

// makeRoom evicts when full: first keys idle past the window and not
// locked, then, if still full, the unlocked key idle longest. It reports
// whether there is room. Called with mu held.
func (l *limiter) makeRoom(now time.Time) bool {
	if len(l.m) < l.maxKeys {
		return true
	}
	var oldestKey string
	var oldest time.Time
	for k, a := range l.m {
		if now.Before(a.lockedUntil) {
			continue
		}
		if now.Sub(a.last) > limitWindow {
			delete(l.m, k)
			continue
		}
		if oldestKey == "" || a.last.Before(oldest) {
			oldestKey, oldest = k, a.last
		}
	}
	if len(l.m) >= l.maxKeys && oldestKey != "" {
		delete(l.m, oldestKey)
	}
	return len(l.m) < l.maxKeys
}
