// Package browser drives a headless Chromium (Debian's /usr/bin/chromium,
// installed by scripts/setup.sh) with chromedp for the real-browser tests
// of the pages.
//
// One Browser per test; each Session is an incognito browser context (own
// cookies), so several users can be logged in at once. Every failed step
// saves a screenshot and the page's HTML to test/artifacts/ (gitignored),
// and so does the test's cleanup when the test failed.
package browser

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ChromiumPath is where Debian's chromium package puts the browser.
const ChromiumPath = "/usr/bin/chromium"

// StepTimeout bounds one Do or HTML call.
const StepTimeout = 30 * time.Second

// Browser is one Chromium process.
type Browser struct {
	t     testing.TB
	alloc context.Context
	root  context.Context
	mu    sync.Mutex
	shots int
}

// Start launches Chromium, or skips the test in -short mode or when
// Chromium is absent. It is stopped on cleanup.
func Start(t testing.TB) *Browser {
	t.Helper()
	if testing.Short() {
		t.Skip("browser tests are skipped in -short mode")
	}
	if _, err := os.Stat(ChromiumPath); err != nil {
		t.Skipf("browser tests need %s (scripts/setup.sh installs it): %v", ChromiumPath, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(ChromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox, // we run as root in CI containers
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 900),
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	root, cancelRoot := chromedp.NewContext(alloc)
	// The first Run starts the browser; it must not carry a timeout.
	if err := chromedp.Do(root); err != nil {
		cancelRoot()
		cancelAlloc()
		t.Fatalf("start %s: %v", ChromiumPath, err)
	}
	t.Cleanup(func() { cancelRoot(); cancelAlloc() })
	return &Browser{t: t, alloc: alloc, root: root}
}

// Session is one incognito browser context with one tab.
type Session struct {
	b    *Browser
	t    testing.TB
	name string
	ctx  context.Context
}

// NewSession opens a tab in a fresh browser context; name labels its
// artifacts. On cleanup of a failed test it saves the last page.
func (b *Browser) NewSession(t testing.TB, name string) *Session {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.root, chromedp.WithNewBrowserContext())
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		t.Fatalf("browser session %s: %v", name, err)
	}
	s := &Session{b: b, t: t, name: name, ctx: ctx}
	t.Cleanup(func() {
		if t.Failed() {
			s.SaveArtifacts("at-failure")
		}
		cancel()
	})
	return s
}

// Do runs the steps; on error it saves artifacts and fails the test with
// what was being done.
func (s *Session) Do(what string, steps ...chromedp.Action[chromedp.Void]) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, StepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		s.SaveArtifacts(what)
		s.t.Fatalf("%s (%s): %v", what, s.name, err)
	}
}

// Open navigates to url and waits for the page's body.
func (s *Session) Open(url string) {
	s.t.Helper()
	s.Do("open "+url, chromedp.Navigate(url), chromedp.WaitReady(chromedp.CSS("body")))
}

// HTML is the current document's markup.
func (s *Session) HTML() string {
	s.t.Helper()
	return run(s, "read HTML", chromedp.OuterHTML(chromedp.CSS("html")))
}

// Location is the current URL.
func (s *Session) Location() string {
	s.t.Helper()
	return run(s, "read location", chromedp.Location())
}

// Login fills the login form at base+/login and submits it, then waits
// for the page it lands on.
func (s *Session) Login(base, user, password string) {
	s.t.Helper()
	s.Open(base + "/login")
	s.Do("log in as "+user,
		chromedp.SendKeys(chromedp.CSS(`input[name="user"]`), user),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), password),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitReady(chromedp.CSS("body")),
	)
	// The form redirects; wait until we left /login.
	deadline := time.Now().Add(StepTimeout)
	for strings.Contains(s.Location(), "/login") {
		if time.Now().After(deadline) {
			s.SaveArtifacts("login")
			s.t.Fatalf("login as %s stayed on %s", user, s.Location())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Screenshot saves a full-page PNG to path.
func (s *Session) Screenshot(path string) error {
	ctx, cancel := context.WithTimeout(s.ctx, StepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, png, 0o644)
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// SaveArtifacts writes <test>-<session>-<n>-<what>.png and .html to
// ArtifactsDir, logging where; errors are logged, not fatal (the test is
// already failing).
func (s *Session) SaveArtifacts(what string) {
	s.b.mu.Lock()
	s.b.shots++
	n := s.b.shots
	s.b.mu.Unlock()
	base := filepath.Join(ArtifactsDir(), unsafeName.ReplaceAllString(fmt.Sprintf("%s-%s-%02d-%s", s.t.Name(), s.name, n, what), "_"))
	if err := s.Screenshot(base + ".png"); err != nil {
		s.t.Logf("artifacts: %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, StepTimeout)
	defer cancel()
	if html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html"))); err == nil {
		_ = os.WriteFile(base+".html", []byte(html), 0o644)
	}
	s.t.Logf("artifacts: %s.png", base)
}

// ArtifactsDir is test/artifacts in the repository.
func ArtifactsDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "artifacts")
}

func run[T any](s *Session, what string, a chromedp.Action[T]) T {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, StepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			s.SaveArtifacts(what)
		}
		s.t.Fatalf("%s (%s): %v", what, s.name, err)
	}
	return v
}
