package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// GitRepo is a git work tree in a temp dir on branch main, driven by the
// real git CLI, for tests that fetch from a repository (file:// URL).
type GitRepo struct {
	Dir string
	t   testing.TB
}

// NewGitRepo runs git init in a fresh temp dir.
func NewGitRepo(t testing.TB) *GitRepo {
	t.Helper()
	r := &GitRepo{Dir: t.TempDir(), t: t}
	r.Git("init", "-q", "-b", "main")
	return r
}

// URL is the repository's file:// clone URL.
func (r *GitRepo) URL() string { return "file://" + r.Dir }

// Git runs git with args in the work tree and returns its trimmed output;
// a failure fails the test.
func (r *GitRepo) Git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = r.Dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=Alice", "GIT_AUTHOR_EMAIL=alice@example.com",
		"GIT_COMMITTER_NAME=Alice", "GIT_COMMITTER_EMAIL=alice@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// Write writes a file of the work tree (directories made as needed).
func (r *GitRepo) Write(name, text string) {
	r.t.Helper()
	p := filepath.Join(r.Dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o755); err != nil {
		r.t.Fatal(err)
	}
}

// Commit stages everything and commits it, returning the new HEAD.
func (r *GitRepo) Commit(msg string) string {
	r.t.Helper()
	r.Git("add", "-A")
	r.Git("commit", "-q", "-m", msg)
	return r.Git("rev-parse", "HEAD")
}
