package webhooks

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sharedFixtures returns the shared fixture folder, or skips the test.
func sharedFixtures(t testing.TB) string {
	t.Helper()
	dirs := []string{}
	if env := os.Getenv("DOCKMASTER_SHARED"); env != "" {
		dirs = append(dirs, filepath.Join(env, "fixtures", "webhooks"), env)
	}
	// The package sits at <repo>/webhooks; the shared folder beside the repo.
	dirs = append(dirs, filepath.Join("..", "..", "shared", "fixtures", "webhooks"))
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "github", "push.json")); err == nil {
			return d
		}
	}
	t.Skip("shared webhook fixtures not found (set DOCKMASTER_SHARED)")
	return ""
}

// loadFixture reads a body and its sibling <stem>.headers.txt ("Name: value" lines).
func loadFixture(t testing.TB, path string) Request {
	t.Helper()
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	stem := strings.TrimSuffix(path, filepath.Ext(path))
	f, err := os.Open(stem + ".headers.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("%s.headers.txt: bad line %q", stem, line)
		}
		h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return Request{Header: h, Body: body}
}

// secrets builds a SecretLookup from "provider" and "provider|repo" keys.
func secrets(m map[string]string) SecretLookup {
	return func(provider, repo string) (string, bool) {
		key := provider
		if repo != "" {
			key += "|" + repo
		}
		s, ok := m[key]
		return s, ok
	}
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

type fixtureCase struct {
	name     string
	file     string
	endpoint string
	opts     Options
	edit     func(*Request)
	check    func(t *testing.T, d *Delivery)
}

func runFixtures(t *testing.T, dir string, cases []fixtureCase) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := loadFixture(t, filepath.Join(dir, c.file))
			if c.edit != nil {
				c.edit(&req)
			}
			d, err := New(c.opts).Parse(c.endpoint, req)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			c.check(t, d)
		})
	}
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if c, ok := any(got).(Commit); ok {
		w := any(want).(Commit)
		c.Timestamp, w.Timestamp = c.Timestamp.UTC(), w.Timestamp.UTC()
		got, want = any(c).(T), any(w).(T)
	}
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func onlyPush(t *testing.T, d *Delivery, kind Kind) *Push {
	t.Helper()
	if d.Event.Kind != kind || d.Event.Push == nil {
		t.Fatalf("event kind %q push %v, want %q with a push", d.Event.Kind, d.Event.Push, kind)
	}
	return d.Event.Push
}

func TestSharedFixtures(t *testing.T) {
	dir := sharedFixtures(t)
	unsigned := Options{AllowUnsigned: true}
	bearer := func(tok string) func(*Request) {
		return func(r *Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	jenkins := Options{Secrets: secrets(map[string]string{"jenkins": "jt"})}
	runFixtures(t, dir, []fixtureCase{
		{name: "github push", file: "github/push.json", endpoint: "github",
			opts: Options{Secrets: secrets(map[string]string{"github": "topsecret"})},
			check: func(t *testing.T, d *Delivery) {
				p := onlyPush(t, d, KindPush)
				eq(t, "provider", d.Provider, "github")
				eq(t, "id", d.ID, "ee8d97b4-1479-43f1-9cac-fbbd1b80da55")
				eq(t, "event", d.EventName, "push")
				eq(t, "repo", p.Repo, Repo{FullName: "Codertocat/Hello-World", CloneURL: "https://github.com/Codertocat/Hello-World.git", WebURL: "https://github.com/Codertocat/Hello-World"})
				eq(t, "ref", p.Ref, "refs/heads/master")
				eq(t, "branch", p.Branch, "master")
				eq(t, "tag", p.Tag, "")
				eq(t, "before", p.Before, "a10867b14bb761a232cd80139fbd4c0d33264240")
				eq(t, "after", p.After, "199eddf46df50de8d02e99bf1c5fdb4101338224")
				eq(t, "created/deleted/forced", [3]bool{p.Created, p.Deleted, p.Forced}, [3]bool{})
				eq(t, "pusher", p.Pusher, "Codertocat")
				eq(t, "pusher email", p.PusherEmail, "21031067+Codertocat@users.noreply.github.com")
				eq(t, "count", p.CommitCount, 1)
				eq(t, "head", *p.HeadCommit, Commit{ID: "199eddf46df50de8d02e99bf1c5fdb4101338224", Message: "Update README",
					AuthorName: "Codertocat", AuthorEmail: "21031067+Codertocat@users.noreply.github.com"}.withTime(mustTime(t, "2018-06-15T13:01:51-07:00")))
				eq(t, "actionable", d.Event.Actionable(), true)
			}},
		{name: "github push sha1 only, allowed", file: "github/push.json", endpoint: "github",
			opts: Options{Secrets: secrets(map[string]string{"github": "topsecret"}), AllowSHA1: true},
			edit: func(r *Request) { r.Header.Del("X-Hub-Signature-256") },
			check: func(t *testing.T, d *Delivery) {
				eq(t, "after", onlyPush(t, d, KindPush).After, "199eddf46df50de8d02e99bf1c5fdb4101338224")
			}},
		{name: "github ping", file: "github/ping.json", endpoint: "github",
			opts: Options{Secrets: secrets(map[string]string{"github|lanwen/test": "123"}), RepoScoped: true},
			check: func(t *testing.T, d *Delivery) {
				eq(t, "kind", d.Event.Kind, KindPing)
				eq(t, "actionable", d.Event.Actionable(), false)
				eq(t, "id is a body hash", strings.HasPrefix(d.ID, "sha256:"), true)
			}},
		{name: "github tag", file: "github/push-tag.json", endpoint: "", opts: unsigned,
			check: func(t *testing.T, d *Delivery) {
				p := onlyPush(t, d, KindTag)
				eq(t, "tag", p.Tag, "v1.0")
				eq(t, "branch", p.Branch, "")
				eq(t, "created", p.Created, true)
				eq(t, "before", p.Before, ZeroSHA)
				eq(t, "after", p.After, "63738bb582c8b540af7bcfc18f87c575c3ed66e0")
				eq(t, "repo", p.Repo.FullName, "jessesuen/test-repo")
				eq(t, "head message", p.HeadCommit.Message, "Add staging-argocd-demo environment")
				eq(t, "head author", p.HeadCommit.AuthorName, "Jesse Suen")
				eq(t, "count", p.CommitCount, 0)
				eq(t, "id", d.ID, hashID("github", loadFixture(t, filepath.Join(dir, "github/push-tag.json")).Body))
				eq(t, "actionable", d.Event.Actionable(), true)
			}},
		{name: "github branch deleted", file: "github/push-branch-deleted.json", endpoint: "github", opts: unsigned,
			check: func(t *testing.T, d *Delivery) {
				p := onlyPush(t, d, KindPush)
				eq(t, "id", d.ID, "f2467dea-70d6-11e8-8955-3c83993e0aef")
				eq(t, "branch", p.Branch, "feature-branch")
				eq(t, "deleted", p.Deleted, true)
				eq(t, "after", p.After, ZeroSHA)
				eq(t, "head nil", p.HeadCommit == nil, true)
				eq(t, "pusher", p.Pusher, "bradrydzewski")
				eq(t, "actionable", d.Event.Actionable(), false)
			}},
		{name: "gitlab push", file: "gitlab/push.json", endpoint: "gitlab",
			opts: Options{Secrets: secrets(map[string]string{"gitlab": "sampleToken!"})},
			check: func(t *testing.T, d *Delivery) {
				p := onlyPush(t, d, KindPush)
				eq(t, "event", d.EventName, "push")
				eq(t, "repo", p.Repo, Repo{FullName: "mike/diaspora", CloneURL: "http://example.com/mike/diaspora.git", WebURL: "http://example.com/mike/diaspora"})
				eq(t, "branch", p.Branch, "master")
				eq(t, "before", p.Before, "95790bf891e76fee5e1747ab589903a6a1f80f22")
				eq(t, "after", p.After, "da1560886d4f094c3e6c9ef40349f7d38b5d27d7")
				eq(t, "pusher", p.Pusher, "John Smith")
				eq(t, "pusher email", p.PusherEmail, "john@example.com")
				eq(t, "count (total_commits_count, not listed)", p.CommitCount, 4)
				eq(t, "head message", p.HeadCommit.Message, "fixed readme")
				eq(t, "head author", p.HeadCommit.AuthorName, "GitLab dev user")
				eq(t, "head time", p.HeadCommit.Timestamp.Equal(mustTime(t, "2012-01-03T23:36:29+02:00")), true)
			}},
		{name: "gitlab tag", file: "gitlab/tag-push.json", endpoint: "gitlab",
			opts: Options{Secrets: secrets(map[string]string{"gitlab|jsmith/example": "sampleToken!"}), RepoScoped: true},
			check: func(t *testing.T, d *Delivery) {
				p := onlyPush(t, d, KindTag)
				eq(t, "event", d.EventName, "tag_push")
				eq(t, "tag", p.Tag, "v1.0.0")
				eq(t, "created", p.Created, true)
				eq(t, "after", p.After, "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7")
				eq(t, "head id", p.HeadCommit.ID, "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7")
				eq(t, "repo", p.Repo.FullName, "jsmith/example")
			}},
		{name: "gitea push", file: "gitea/push.json", endpoint: "gitea",
			opts: Options{Secrets: secrets(map[string]string{"gitea": "IsWishesWereHorsesWedAllBeEatingSteak!"})},
			check: func(t *testing.T, d *Delivery) {
				p := onlyPush(t, d, KindPush)
				eq(t, "provider", d.Provider, "gitea")
				eq(t, "repo", p.Repo, Repo{FullName: "example/example", CloneURL: "http://localhost:3000/example/example.git", WebURL: "http://localhost:3000/example/example"})
				eq(t, "branch", p.Branch, "master")
				eq(t, "created", p.Created, true)
				eq(t, "after", p.After, "67b56589a45103f891bdee7c0546e5d40bc02001")
				eq(t, "pusher", p.Pusher, "example")
				eq(t, "head message", p.HeadCommit.Message, "example\n")
				eq(t, "count", p.CommitCount, 1)
			}},
		{name: "bitbucket cloud push", file: "bitbucket-cloud/repo-push.json", endpoint: "bitbucket",
			opts: Options{Secrets: secrets(map[string]string{"bitbucket|team_name/repo_name": "bbt"}), RepoScoped: true},
			edit: func(r *Request) { r.Query = url.Values{"token": {"bbt"}} },
			check: func(t *testing.T, d *Delivery) {
				p := onlyPush(t, d, KindPush)
				eq(t, "provider", d.Provider, "bitbucket-cloud")
				eq(t, "repo", p.Repo, Repo{FullName: "team_name/repo_name", CloneURL: "https://bitbucket.org/team_name/repo_name.git", WebURL: "https://api.bitbucket.org/bitbucket/bitbucket"})
				eq(t, "ref", p.Ref, "refs/heads/name-of-branch")
				eq(t, "before", p.Before, "1e65c05c1d5171631d92438a13901ca7dae9618c")
				eq(t, "after", p.After, "709d658dc5b6d6afcd46049c2f332ee3f515a67d")
				eq(t, "pusher", p.Pusher, "emmap1")
				eq(t, "head", *p.HeadCommit, Commit{ID: "709d658dc5b6d6afcd46049c2f332ee3f515a67d", Message: "new commit message\n", AuthorName: "Emma"}.withTime(mustTime(t, "2015-06-09T03:34:49Z")))
				eq(t, "count", p.CommitCount, 1)
				eq(t, "more", len(d.Event.More), 0)
			}},
		{name: "bitbucket server branch delete", file: "bitbucket-server/refs-changed.json", endpoint: "bitbucket",
			opts: Options{Secrets: secrets(map[string]string{"bitbucket-server": "secret"})},
			check: func(t *testing.T, d *Delivery) {
				p := onlyPush(t, d, KindPush)
				eq(t, "provider", d.Provider, "bitbucket-server")
				eq(t, "event", d.EventName, "repo:refs_changed")
				eq(t, "repo", p.Repo, Repo{FullName: "~gopher/webhook-test", CloneURL: "https://server.bitbucket.local/scm/~gopher/webhook-test.git", WebURL: "https://server.bitbucket.local/users/gopher/repos/webhook-test/browse"})
				eq(t, "branch", p.Branch, "feature/wip")
				eq(t, "before", p.Before, "32a0b8a740c2963c6f56bd8baf3dc05683d299e0")
				eq(t, "deleted", p.Deleted, true)
				eq(t, "pusher", p.Pusher, "gopher")
				eq(t, "actionable", d.Event.Actionable(), false)
			}},
		{name: "jenkins started", file: "jenkins/notification-started.json", endpoint: "jenkins", opts: jenkins, edit: bearer("jt"),
			check: func(t *testing.T, d *Delivery) {
				b := d.Event.Build
				eq(t, "kind", d.Event.Kind, KindBuild)
				eq(t, "job", b.Job, "support")
				eq(t, "number", b.Number, int64(162))
				eq(t, "phase", b.Phase, PhaseStarted)
				eq(t, "status", b.Status, Status(""))
				eq(t, "url", b.URL, "http://localhost:8080/job/dss-support/162/")
			}},
		{name: "jenkins completed success", file: "jenkins/notification-completed-success.json", endpoint: "jenkins", opts: jenkins, edit: bearer("jt"),
			check: func(t *testing.T, d *Delivery) {
				b := d.Event.Build
				eq(t, "job", b.Job, "asgard")
				eq(t, "number", b.Number, int64(18))
				eq(t, "phase", b.Phase, PhaseCompleted)
				eq(t, "final", b.Phase.Final(), false)
				eq(t, "status", b.Status, StatusSuccess)
				eq(t, "url", b.URL, "http://localhost:8080/job/asgard/18/")
				eq(t, "scm", b.SCM, SCM{URL: "https://github.com/evgeny-goldin/asgard.git", Branch: "origin/master", Commit: "c6d86dc654b12425e706bcf951adfe5a8627a517"})
				eq(t, "event", d.EventName, "COMPLETED")
			}},
		{name: "jenkins legacy finished failure", file: "jenkins/notification-finished-failure-legacy.json", endpoint: "jenkins", opts: jenkins, edit: bearer("jt"),
			check: func(t *testing.T, d *Delivery) {
				b := d.Event.Build
				eq(t, "job", b.Job, "projectmonitor_ci_test")
				eq(t, "number", b.Number, int64(7))
				eq(t, "phase", b.Phase, PhaseFinished)
				eq(t, "final", b.Phase.Final(), true)
				eq(t, "status", b.Status, StatusFailure)
				eq(t, "url", b.URL, "job/projectmonitor_ci_test/7/")
			}},
		{name: "jenkins legacy started empty status", file: "jenkins/notification-started-legacy-empty-status.json", endpoint: "jenkins", opts: jenkins, edit: bearer("jt"),
			check: func(t *testing.T, d *Delivery) {
				b := d.Event.Build
				eq(t, "phase", b.Phase, PhaseStarted)
				eq(t, "status", b.Status, Status(""))
				eq(t, "number", b.Number, int64(7))
			}},
		{name: "registry push", file: "registry/push.json", endpoint: "registry",
			opts: Options{Secrets: secrets(map[string]string{"registry": "rt"})}, edit: bearer("rt"),
			check: func(t *testing.T, d *Delivery) {
				eq(t, "kind", d.Event.Kind, KindImage)
				eq(t, "id", d.ID, "c405c239-0e47-436e-8677-ad138e14e224")
				if len(d.Event.Images) != 1 {
					t.Fatalf("images = %d", len(d.Event.Images))
				}
				im := d.Event.Images[0]
				eq(t, "repository", im.Repository, "golang")
				eq(t, "tag", im.Tag, "1.12.4")
				eq(t, "digest", im.Digest, "sha256:85032fa900cd979127f344c594f714b59e147c6ecbab83bd1ed0ad3ca2e64441")
				eq(t, "media type", im.MediaType, "application/vnd.docker.distribution.manifest.v2+json")
				eq(t, "size", im.Size, int64(1796))
				eq(t, "time", im.Timestamp.Equal(mustTime(t, "2019-06-05T13:37:28.612683317Z")), true)
				eq(t, "headers redacted", d.Headers.Get("Authorization"), "[redacted]")
			}},
	})
}

func (c Commit) withTime(ts time.Time) Commit { c.Timestamp = ts; return c }

func TestOwnFixtures(t *testing.T) {
	dir := "testdata"
	runFixtures(t, dir, []fixtureCase{
		{name: "github form-encoded forced push, repo secret", file: "github/push-forced.form", endpoint: "github",
			opts: Options{Secrets: secrets(map[string]string{"github|acme/shop": "gh-secret", "github": "not-this-one"}), RepoScoped: true},
			check: func(t *testing.T, d *Delivery) {
				p := onlyPush(t, d, KindPush)
				eq(t, "id", d.ID, "5e1b3a00-d7f1-11ee-8a7e-000000000001")
				eq(t, "repo", p.Repo.FullName, "acme/shop")
				eq(t, "branch", p.Branch, "main")
				eq(t, "forced", p.Forced, true)
				eq(t, "after", p.After, "2222222222222222222222222222222222222222")
				eq(t, "pusher", p.Pusher, "ada")
				eq(t, "head message", p.HeadCommit.Message, "Rewrite checkout & pay flow")
				eq(t, "head time", p.HeadCommit.Timestamp.Equal(mustTime(t, "2024-03-01T09:00:00Z")), true)
			}},
		{name: "gitlab tag push with Idempotency-Key", file: "gitlab/tag-push-v2.json", endpoint: "gitlab",
			opts: Options{Secrets: secrets(map[string]string{"gitlab": "gl-token"})},
			check: func(t *testing.T, d *Delivery) {
				p := onlyPush(t, d, KindTag)
				eq(t, "id", d.ID, "f5e5f430-f57b-4e6e-9fac-d9128cd7232f")
				eq(t, "tag", p.Tag, "v2.1.0")
				eq(t, "repo", p.Repo.CloneURL, "https://gitlab.acme.test/platform/example.git")
				eq(t, "pusher", p.Pusher, "jsmith")
				eq(t, "redacted email dropped", p.PusherEmail, "")
				eq(t, "token redacted", d.Headers.Get("X-Gitlab-Token"), "[redacted]")
			}},
		{name: "gitea form-encoded on the gitea endpoint", file: "gitea/push.form", endpoint: "gitea",
			opts: Options{Secrets: secrets(map[string]string{"gitea": "gitea-secret"})},
			check: func(t *testing.T, d *Delivery) {
				p := onlyPush(t, d, KindPush)
				eq(t, "provider", d.Provider, "gitea")
				eq(t, "id", d.ID, "a1b2c3d4-0000-4000-8000-00000000gt01")
				eq(t, "branch", p.Branch, "release/1.x")
				eq(t, "count (total_commits)", p.CommitCount, 3)
				eq(t, "pusher", p.Pusher, "bob")
				eq(t, "repo", p.Repo.FullName, "ops/api")
			}},
		{name: "gitea delivered to the github endpoint", file: "gitea/push.form", endpoint: "github",
			opts:  Options{Secrets: secrets(map[string]string{"gitea": "gitea-secret"})},
			check: func(t *testing.T, d *Delivery) { eq(t, "provider", d.Provider, "gitea") }},
		{name: "gogs", file: "gogs/push.json", endpoint: "gogs",
			opts: Options{Secrets: secrets(map[string]string{"gogs": "gogs-secret"})},
			check: func(t *testing.T, d *Delivery) {
				p := onlyPush(t, d, KindPush)
				eq(t, "provider", d.Provider, "gogs")
				eq(t, "id", d.ID, "gogs-0001")
				eq(t, "pusher", p.Pusher, "carol")
				eq(t, "head from commits", p.HeadCommit.Message, "Bump version\n")
				eq(t, "head id", p.HeadCommit.ID, "6666666666666666666666666666666666666666")
			}},
		{name: "forgejo tag on the gitea endpoint, endpoint secret", file: "forgejo/push-tag.json", endpoint: "gitea",
			opts: Options{Secrets: secrets(map[string]string{"gitea": "forgejo-secret"})},
			check: func(t *testing.T, d *Delivery) {
				p := onlyPush(t, d, KindTag)
				eq(t, "provider", d.Provider, "forgejo")
				eq(t, "id", d.ID, "fj-0001")
				eq(t, "tag", p.Tag, "v0.9.0")
				eq(t, "created", p.Created, true)
				eq(t, "pusher", p.Pusher, "dora")
			}},
		{name: "forgejo on the github endpoint", file: "forgejo/push-tag.json", endpoint: "github",
			opts:  Options{Secrets: secrets(map[string]string{"forgejo": "forgejo-secret"})},
			check: func(t *testing.T, d *Delivery) { eq(t, "provider", d.Provider, "forgejo") }},
		{name: "bitbucket cloud token, two changes", file: "bitbucket-cloud/push-tag-and-delete.json", endpoint: "bitbucket",
			opts: Options{Secrets: secrets(map[string]string{"bitbucket": "bb-token"})},
			edit: func(r *Request) { r.Query = url.Values{"token": {"bb-token"}} },
			check: func(t *testing.T, d *Delivery) {
				p := onlyPush(t, d, KindTag)
				eq(t, "provider", d.Provider, "bitbucket-cloud")
				eq(t, "id", d.ID, "{r1r1r1r1-0000-4000-8000-000000000002}")
				eq(t, "tag", p.Tag, "v3.0.0")
				eq(t, "created", p.Created, true)
				eq(t, "before", p.Before, ZeroSHA)
				eq(t, "head author", p.HeadCommit.AuthorName+" "+p.HeadCommit.AuthorEmail, "Erin Example erin@acme.test")
				if len(d.Event.More) != 1 {
					t.Fatalf("more = %d, want 1", len(d.Event.More))
				}
				del := d.Event.More[0]
				eq(t, "deleted branch", del.Branch, "feature/old")
				eq(t, "deleted", del.Deleted, true)
				eq(t, "deleted before", del.Before, "9999999999999999999999999999999999999999")
				eq(t, "deleted after", del.After, ZeroSHA)
				eq(t, "deleted head", del.HeadCommit == nil, true)
				eq(t, "actionable", d.Event.Actionable(), true)
				eq(t, "pushes", len(d.Event.Pushes()), 2)
			}},
		{name: "generic build", file: "generic/build.json", endpoint: "generic",
			opts: Options{Secrets: secrets(map[string]string{"generic|team/shop/main": "ci-token"}), RepoScoped: true},
			check: func(t *testing.T, d *Delivery) {
				b := d.Event.Build
				eq(t, "kind", d.Event.Kind, KindBuild)
				eq(t, "job", b.Job, "team/shop/main")
				eq(t, "number", b.Number, int64(57))
				eq(t, "queue", b.QueueID, int64(1201))
				eq(t, "phase", b.Phase, PhaseFinalized)
				eq(t, "status", b.Status, StatusSuccess)
				eq(t, "scm", b.SCM, SCM{URL: "https://github.com/acme/shop.git", Branch: "main", Commit: "2222222222222222222222222222222222222222"})
				if !reflect.DeepEqual(b.Parameters, map[string]string{"VERSION": "1.4.2", "DEPLOY": "true"}) {
					t.Errorf("parameters = %v", b.Parameters)
				}
			}},
		{name: "jenkins legacy FINISHED in folders, Basic auth", file: "jenkins/finished-legacy-folder.json", endpoint: "jenkins",
			opts: Options{Secrets: secrets(map[string]string{"jenkins|platform/backend/api": "jk-token"}), RepoScoped: true},
			check: func(t *testing.T, d *Delivery) {
				b := d.Event.Build
				eq(t, "job", b.Job, "platform/backend/api")
				eq(t, "name", b.Name, "api")
				eq(t, "number", b.Number, int64(31))
				eq(t, "phase", b.Phase, PhaseFinished)
				eq(t, "status", b.Status, StatusUnstable)
				eq(t, "scm branch", b.SCM.Branch, "origin/release/1.x")
				if !reflect.DeepEqual(b.Parameters, map[string]string{"VERSION": "1.0.7", "SKIP_TESTS": "false"}) {
					t.Errorf("parameters = %v", b.Parameters)
				}
			}},
		{name: "registry: layer push and pull skipped", file: "registry/mixed.json", endpoint: "",
			opts: Options{Secrets: secrets(map[string]string{"registry": "reg-token"})},
			check: func(t *testing.T, d *Delivery) {
				eq(t, "provider", d.Provider, "registry")
				eq(t, "id", d.ID, "evt-a")
				if len(d.Event.Images) != 1 {
					t.Fatalf("images = %+v", d.Event.Images)
				}
				im := d.Event.Images[0]
				eq(t, "event id", im.EventID, "evt-c")
				eq(t, "tag", im.Tag, "1.4.2")
				eq(t, "digest", im.Digest, "sha256:"+strings.Repeat("c", 64))
				eq(t, "media", im.MediaType, "application/vnd.oci.image.manifest.v1+json")
				eq(t, "repo", im.Repository, "acme/shop")
			}},
	})
}

func TestDetect(t *testing.T) {
	for _, c := range []struct {
		file, want string
	}{
		{"gitea/push.form", "gitea"},
		{"forgejo/push-tag.json", "forgejo"},
		{"gogs/push.json", "gogs"},
		{"github/push-forced.form", "github"},
		{"gitlab/tag-push-v2.json", "gitlab"},
		{"bitbucket-cloud/push-tag-and-delete.json", "bitbucket"},
		{"registry/mixed.json", "registry"},
		{"generic/build.json", ""},
	} {
		req := loadFixture(t, filepath.Join("testdata", c.file))
		eq(t, c.file, Detect(req.Header), c.want)
	}
}

// oneByte returns body with one lowercase letter past its middle upper-cased.
func oneByte(body []byte) []byte {
	b := bytes.Clone(body)
	for i := len(b) / 2; i < len(b); i++ {
		if b[i] >= 'a' && b[i] <= 'z' {
			b[i] -= 'a' - 'A'
			return b
		}
	}
	panic("no letter to change")
}

type sigCase struct {
	name   string
	edit   func(r *Request)
	opts   func(o *Options)
	header string // expected UnauthorizedError.Header, "" = success
}

func TestSignatures(t *testing.T) {
	type provider struct {
		name, file, endpoint, secret, header string
		signed                               bool   // the signature covers the body
		other                                string // a signature by another algorithm, "" = n/a
		query                                bool   // token via ?token=
	}
	providers := []provider{
		{name: "github", signed: true, file: "github/push-forced.form", endpoint: "github", secret: "gh-secret", header: "X-Hub-Signature-256"},
		{name: "gitea", signed: true, file: "gitea/push.form", endpoint: "gitea", secret: "gitea-secret", header: "X-Gitea-Signature"},
		{name: "gogs", signed: true, file: "gogs/push.json", endpoint: "gogs", secret: "gogs-secret", header: "X-Gogs-Signature"},
		{name: "forgejo", signed: true, file: "forgejo/push-tag.json", endpoint: "forgejo", secret: "forgejo-secret", header: "X-Forgejo-Signature"},
		{name: "gitlab", file: "gitlab/tag-push-v2.json", endpoint: "gitlab", secret: "gl-token", header: "X-Gitlab-Token"},
		{name: "generic", file: "generic/build.json", endpoint: "generic", secret: "ci-token", header: TokenHeader + " or Authorization: Bearer"},
		{name: "jenkins", file: "jenkins/finished-legacy-folder.json", endpoint: "jenkins", secret: "jk-token", header: TokenHeader + ", Authorization or ?token="},
		{name: "registry", file: "registry/mixed.json", endpoint: "registry", secret: "reg-token", header: "Authorization: Bearer"},
		{name: "bitbucket-cloud token", file: "bitbucket-cloud/push-tag-and-delete.json", endpoint: "bitbucket", secret: "bb-token", header: "X-Hub-Signature or ?token=", query: true},
	}
	for _, p := range providers {
		base := loadFixture(t, filepath.Join("testdata", p.file))
		if p.query {
			base.Query = url.Values{"token": {p.secret}}
		}
		set := func(v string) func(r *Request) {
			return func(r *Request) {
				switch {
				case p.query:
					r.Query = url.Values{"token": {v}}
				case p.name == "registry":
					r.Header.Set("Authorization", "Bearer "+v)
				case p.name == "jenkins":
					r.Header.Set("Authorization", "Basic "+basic("jenkins", v))
				case p.name == "generic":
					r.Header.Set(TokenHeader, v)
				default:
					r.Header.Set(p.header, v)
				}
			}
		}
		del := func(r *Request) {
			r.Query = nil
			for _, h := range []string{p.header, "Authorization", TokenHeader, "X-Gitea-Signature"} {
				r.Header.Del(h)
			}
		}
		wrong := set("wrong-secret")
		if sig, ok := resign(p.name, base, "wrong-secret"); ok {
			wrong = func(r *Request) { r.Header.Set(p.header, sig) }
		}
		cases := []sigCase{
			{name: "right"},
			{name: "wrong", edit: wrong, header: p.header},
			{name: "missing", edit: del, header: p.header},
			{name: "empty", edit: set(""), header: p.header},
			{name: "no secret configured", opts: func(o *Options) { o.Secrets = nil }, header: p.header},
			{name: "no secret, unsigned allowed", opts: func(o *Options) { o.Secrets = nil; o.AllowUnsigned = true }},
			{name: "secret enforced even if unsigned allowed", edit: wrong, opts: func(o *Options) { o.AllowUnsigned = true }, header: p.header},
		}
		if p.signed {
			cases = append(cases, sigCase{name: "body changed by one byte", edit: func(r *Request) { r.Body = oneByte(r.Body) }, header: p.header})
		}
		if p.name == "github" {
			cases = append(cases,
				sigCase{name: "sha1 only, not allowed", edit: func(r *Request) { r.Header.Del("X-Hub-Signature-256") }, header: "X-Hub-Signature-256"},
				sigCase{name: "sha1 only, allowed", edit: func(r *Request) { r.Header.Del("X-Hub-Signature-256") }, opts: func(o *Options) { o.AllowSHA1 = true }},
				sigCase{name: "sha1 in the sha256 header", edit: func(r *Request) { r.Header.Set("X-Hub-Signature-256", r.Header.Get("X-Hub-Signature")) }, header: "X-Hub-Signature-256"},
				sigCase{name: "upper-case hex accepted", edit: func(r *Request) {
					r.Header.Set("X-Hub-Signature-256", "sha256="+strings.ToUpper(strings.TrimPrefix(r.Header.Get("X-Hub-Signature-256"), "sha256=")))
				}},
				// Gitea signs the decoded JSON; GitHub the raw form body: a signature
				// over the decoded JSON must not pass for GitHub.
				sigCase{name: "signed like gitea", edit: func(r *Request) {
					payload, _ := formPayload("github", *r)
					r.Header.Set("X-Hub-Signature-256", "sha256="+hmacHex("gh-secret", payload))
				}, header: "X-Hub-Signature-256"},
			)
		}
		if p.name == "gitea" {
			cases = append(cases,
				sigCase{name: "other algorithm (sha1 hex)", edit: func(r *Request) {
					r.Header.Set("X-Gitea-Signature", strings.TrimPrefix(r.Header.Get("X-Hub-Signature"), "sha1="))
				}, header: "X-Gitea-Signature"},
				sigCase{name: "signed like github (raw form body)", edit: func(r *Request) {
					r.Header.Set("X-Gitea-Signature", hmacHex("gitea-secret", r.Body))
				}, header: "X-Gitea-Signature"})
		}
		if p.name == "gitlab" {
			cases = append(cases, sigCase{name: "repo-scoped secret wins", opts: func(o *Options) {
				o.Secrets = secrets(map[string]string{"gitlab|platform/example": "gl-token", "gitlab": "other"})
				o.RepoScoped = true
			}})
		}
		if p.name == "generic" {
			cases = append(cases, sigCase{name: "bearer accepted", edit: func(r *Request) {
				r.Header.Del(TokenHeader)
				r.Header.Set("Authorization", "Bearer ci-token")
			}})
		}
		for _, c := range cases {
			t.Run(p.name+"/"+c.name, func(t *testing.T) {
				req := Request{Header: base.Header.Clone(), Query: base.Query, Body: base.Body}
				if c.edit != nil {
					c.edit(&req)
				}
				opts := Options{Secrets: secrets(map[string]string{p.endpoint: p.secret, providerOf(p.name): p.secret})}
				if c.opts != nil {
					c.opts(&opts)
				}
				d, err := New(opts).Parse(p.endpoint, req)
				checkAuth(t, d, err, c.header, p.secret)
			})
		}
	}
}

func providerOf(name string) string { return strings.TrimSuffix(name, " token") }

func checkAuth(t *testing.T, d *Delivery, err error, wantHeader, secret string) {
	t.Helper()
	if wantHeader == "" {
		if err != nil {
			t.Fatalf("want success, got %v", err)
		}
		if d == nil {
			t.Fatal("nil delivery")
		}
		return
	}
	var ue *UnauthorizedError
	if !errors.As(err, &ue) || !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("want *UnauthorizedError, got %v", err)
	}
	eq(t, "header", ue.Header, wantHeader)
	eq(t, "status", HTTPStatus(err), http.StatusUnauthorized)
	// ("secret" itself is a word of the messages; longer test secrets are not.)
	if (secret != "secret" && strings.Contains(err.Error(), secret)) || strings.Contains(err.Error(), "wrong-secret") {
		t.Errorf("error leaks a secret: %v", err)
	}
}

func TestBitbucketServerSignature(t *testing.T) {
	dir := sharedFixtures(t)
	base := loadFixture(t, filepath.Join(dir, "bitbucket-server/refs-changed.json"))
	const h = "X-Hub-Signature"
	for _, c := range []sigCase{
		{name: "right"},
		{name: "wrong", edit: func(r *Request) { r.Header.Set(h, "sha256="+hmacHex("other", r.Body)) }, header: h},
		{name: "missing", edit: func(r *Request) { r.Header.Del(h) }, header: h},
		{name: "empty", edit: func(r *Request) { r.Header.Set(h, "") }, header: h},
		{name: "bare prefix", edit: func(r *Request) { r.Header.Set(h, "sha256=") }, header: h},
		{name: "other algorithm", edit: func(r *Request) { r.Header.Set(h, "sha1="+hmacHex("secret", r.Body)[:40]) }, header: h},
		{name: "body changed by one byte", edit: func(r *Request) { r.Body = oneByte(r.Body) }, header: h},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := Request{Header: base.Header.Clone(), Body: base.Body}
			if c.edit != nil {
				c.edit(&req)
			}
			d, err := New(Options{Secrets: secrets(map[string]string{"bitbucket": "secret"})}).Parse("bitbucket", req)
			checkAuth(t, d, err, c.header, "secret")
		})
	}
}

func TestBitbucketCloudSigned(t *testing.T) {
	base := loadFixture(t, filepath.Join("testdata", "bitbucket-cloud/push-tag-and-delete.json"))
	opts := Options{Secrets: secrets(map[string]string{"bitbucket-cloud": "s3"})}
	req := Request{Header: base.Header.Clone(), Body: base.Body}
	req.Header.Set("X-Hub-Signature", "sha256="+hmacHex("s3", req.Body))
	if _, err := New(opts).Parse("bitbucket", req); err != nil {
		t.Fatalf("signed cloud hook: %v", err)
	}
	req.Header.Set("X-Hub-Signature", "sha256="+hmacHex("s4", req.Body))
	req.Query = url.Values{"token": {"s3"}} // a right token does not rescue a wrong signature
	_, err := New(opts).Parse("bitbucket", req)
	checkAuth(t, nil, err, "X-Hub-Signature", "s3")
}

func TestGiteaEmptySignatureIsUnsigned(t *testing.T) {
	base := loadFixture(t, filepath.Join("testdata", "gitea/push.form"))
	base.Header.Set("X-Gitea-Signature", "")
	if _, err := New(Options{AllowUnsigned: true}).Parse("gitea", base); err != nil {
		t.Fatalf("unsigned allowed, no secret: %v", err)
	}
	_, err := New(Options{Secrets: secrets(map[string]string{"gitea": "gitea-secret"})}).Parse("gitea", base)
	checkAuth(t, nil, err, "X-Gitea-Signature", "gitea-secret")
	if !strings.Contains(err.Error(), "empty") {
		t.Errorf("error %q should say the signature is empty", err)
	}
}

func TestErrors(t *testing.T) {
	open := New(Options{AllowUnsigned: true})
	gl := func(body string) Request {
		return Request{Header: http.Header{"X-Gitlab-Event": {"Push Hook"}}, Body: []byte(body)}
	}
	for _, c := range []struct {
		name     string
		endpoint string
		req      Request
		target   error
		field    string
		line     int
		column   int
	}{
		{name: "syntax error located", endpoint: "gitlab", req: gl("{\"object_kind\": \"push\",\n  \"ref\": }"),
			target: ErrMalformed, line: 2, column: 10},
		{name: "type error names the field", endpoint: "gitlab", req: gl("{\"object_kind\": \"push\",\n \"after\": 12}"),
			target: ErrMalformed, field: "after", line: 2, column: 12},
		{name: "missing field", endpoint: "gitlab", req: gl(`{"object_kind":"push","ref":"refs/heads/a","project":{"path_with_namespace":"a/b"}}`),
			target: ErrMalformed, field: "after"},
		{name: "empty body", endpoint: "gitlab", req: gl(""), target: ErrMalformed, field: "body"},
		{name: "gitlab other kind ignored", endpoint: "gitlab", req: gl(`{"object_kind":"issue"}`), target: ErrIgnored},
		{name: "gitlab service hook routed on object_kind", endpoint: "gitlab",
			req:    Request{Header: http.Header{"X-Gitlab-Event": {"Service Hook"}}, Body: []byte(`{"object_kind":"merge_request"}`)},
			target: ErrIgnored},
		{name: "github other event ignored", endpoint: "github",
			req: Request{Header: http.Header{"X-Github-Event": {"issues"}}, Body: []byte(`{}`)}, target: ErrIgnored},
		{name: "github missing event header", endpoint: "github", req: Request{Body: []byte(`{}`)}, target: ErrMalformed, field: "header X-GitHub-Event"},
		{name: "github pull ref ignored", endpoint: "github",
			req:    Request{Header: http.Header{"X-Github-Event": {"push"}}, Body: []byte(`{"ref":"refs/pull/1/head","after":"ab","repository":{"full_name":"a/b"}}`)},
			target: ErrIgnored},
		{name: "github form without payload", endpoint: "github",
			req:    Request{Header: http.Header{"X-Github-Event": {"push"}, "Content-Type": {"application/x-www-form-urlencoded"}}, Body: []byte(`x=1`)},
			target: ErrMalformed, field: "form field payload"},
		{name: "unknown endpoint", endpoint: "svn", req: gl("{}"), target: ErrUnknownProvider},
		{name: "jenkins unknown phase", endpoint: "jenkins", req: Request{Body: []byte(`{"name":"a","url":"job/a/","build":{"number":1,"phase":"DONE"}}`)},
			target: ErrMalformed, field: "build.phase"},
		{name: "jenkins unknown status", endpoint: "jenkins", req: Request{Body: []byte(`{"name":"a","url":"job/a/","build":{"number":1,"phase":"FINALIZED","status":"GREEN"}}`)},
			target: ErrMalformed, field: "build.status"},
		{name: "jenkins finalized without status", endpoint: "jenkins", req: Request{Body: []byte(`{"name":"a","url":"job/a/","build":{"number":1,"phase":"FINALIZED"}}`)},
			target: ErrMalformed, field: "build.status"},
		{name: "jenkins missing number", endpoint: "jenkins", req: Request{Body: []byte(`{"name":"a","build":{"phase":"STARTED"}}`)},
			target: ErrMalformed, field: "build.number"},
		{name: "jenkins xml", endpoint: "jenkins", req: Request{Header: http.Header{"Content-Type": {"application/xml"}}, Body: []byte(`<a/>`)},
			target: ErrMalformed, field: "header Content-Type"},
		{name: "generic unknown field", endpoint: "generic", req: Request{Body: []byte(`{"job":"a","numbr":1}`)},
			target: ErrMalformed, field: "numbr"},
		{name: "generic bad parameters", endpoint: "generic", req: Request{Body: []byte(`{"job":"a","number":1,"status":"SUCCESS","parameters":"x"}`)},
			target: ErrMalformed, field: "parameters"},
		{name: "generic parameter without name", endpoint: "generic", req: Request{Body: []byte(`{"job":"a","number":1,"status":"SUCCESS","parameters":[{"value":"x"}]}`)},
			target: ErrMalformed, field: "parameters[0].name"},
		{name: "generic trailing data", endpoint: "generic", req: Request{Body: []byte(`{"job":"a","number":1,"status":"SUCCESS"} {}`)},
			target: ErrMalformed, field: "body"},
		{name: "registry pull only", endpoint: "registry", req: Request{Body: []byte(`{"events":[{"id":"1","action":"pull","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json"}}]}`)},
			target: ErrIgnored},
		{name: "registry push without digest", endpoint: "registry", req: Request{Body: []byte(`{"events":[{"id":"1","action":"push","target":{"repository":"a","mediaType":"application/vnd.oci.image.manifest.v1+json"}}]}`)},
			target: ErrMalformed, field: "events[0].target.digest"},
		{name: "registry no envelope", endpoint: "registry", req: Request{Body: []byte(`{}`)}, target: ErrMalformed, field: "events"},
		{name: "bitbucket server other key ignored", endpoint: "bitbucket-server", req: Request{Header: http.Header{"X-Event-Key": {"pr:opened"}}, Body: []byte(`{}`)}, target: ErrIgnored},
		{name: "bitbucket cloud other key ignored", endpoint: "bitbucket", req: Request{Header: http.Header{"X-Event-Key": {"repo:fork"}, "X-Hook-Uuid": {"u"}}, Body: []byte(`{}`)}, target: ErrIgnored},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, err := open.Parse(c.endpoint, c.req)
			if !errors.Is(err, c.target) || d != nil {
				t.Fatalf("got (%v, %v), want %v", d, err, c.target)
			}
			var me *MalformedError
			if errors.As(err, &me) {
				eq(t, "field", me.Field, c.field)
				if c.line > 0 {
					eq(t, "line:column", [2]int{me.Line, me.Column}, [2]int{c.line, c.column})
				}
				if !strings.Contains(err.Error(), c.field) {
					t.Errorf("message %q does not name %q", err, c.field)
				}
			} else if c.field != "" {
				t.Errorf("want a *MalformedError, got %T", err)
			}
			var ie *IgnoredError
			if errors.As(err, &ie) && ie.Reason == "" {
				t.Errorf("ignored without a reason: %v", err)
			}
		})
	}
}

func TestBitbucketServerPing(t *testing.T) {
	d, err := New(Options{AllowUnsigned: true}).Parse("bitbucket", Request{Header: http.Header{"X-Event-Key": {"diagnostics:ping"}}, Body: []byte(`{"test":true}`)})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "provider", d.Provider, "bitbucket-server")
	eq(t, "kind", d.Event.Kind, KindPing)
	eq(t, "actionable", d.Event.Actionable(), false)
}

func TestHTTPStatus(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{nil, 202},
		{&IgnoredError{Provider: "x", Reason: "r"}, 200},
		{&UnauthorizedError{Provider: "x", Header: "h", Reason: "r"}, 401},
		{&MalformedError{Provider: "x", Err: errMissing}, 400},
		{ErrUnknownProvider, 404},
		{errors.New("boom"), 500},
	} {
		eq(t, "status of "+errString(c.err), HTTPStatus(c.err), c.want)
	}
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

func TestJobFromURL(t *testing.T) {
	for in, want := range map[string]string{
		"job/folder/job/sub/job/job/": "folder/sub/job",
		"job/app/":                    "app",
		"job/app/12/":                 "app",
		"http://ci:8080/jenkins/job/a/job/b/42/console": "a/b",
		"https://ci/job/multi/job/feature%252Fx/3/":     "multi/feature%2Fx",
		"https://ci/job/with%20space/":                  "with space",
		"https://ci/view/all/job/team/job/shop/":        "team/shop",
		"":                                              "",
		"https://ci/":                                   "",
		"job/":                                          "",
	} {
		eq(t, in, JobFromURL(in), want)
	}
}

func TestGenericParameterList(t *testing.T) {
	body := `{"job":"x","number":3,"status":"FAILURE","parameters":[{"name":"A","value":"1"},{"name":"B","value":true},{"name":"C","value":2}]}`
	d, err := New(Options{AllowUnsigned: true}).Parse("generic", Request{Body: []byte(body)})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d.Event.Build.Parameters, map[string]string{"A": "1", "B": "true", "C": "2"}) {
		t.Errorf("parameters = %v", d.Event.Build.Parameters)
	}
	eq(t, "default phase", d.Event.Build.Phase, PhaseFinalized)
}

func TestRedactHeaders(t *testing.T) {
	h := http.Header{
		"Authorization":       {"Bearer abc"},
		"X-Gitlab-Token":      {"tok"},
		"X-Dockmaster-Token":  {"tok2"},
		"X-Hub-Signature-256": {"sha256=00"},
		"X-Github-Event":      {"push"},
		"X-Api-Key":           {"k"},
	}
	out := RedactHeaders(h)
	for _, k := range []string{"Authorization", "X-Gitlab-Token", "X-Dockmaster-Token", "X-Api-Key"} {
		eq(t, k, out.Get(k), "[redacted]")
	}
	eq(t, "signature kept", out.Get("X-Hub-Signature-256"), "sha256=00")
	eq(t, "event kept", out.Get("X-Github-Event"), "push")
	eq(t, "original untouched", h.Get("Authorization"), "Bearer abc")
	out["X-Github-Event"][0] = "changed"
	eq(t, "deep copy", h.Get("X-Github-Event"), "push")
}

// Without RepoScoped the body is not peeked at: a repository-scoped secret
// is not consulted, and the provider's secret verifies.
func TestRepoSecretsNeedRepoScoped(t *testing.T) {
	body := []byte(`{"ref":"refs/heads/main","before":"` + ZeroSHA + `","after":"1111111111111111111111111111111111111111","repository":{"full_name":"acme/shop","clone_url":"https://x/acme/shop.git"},"pusher":{"name":"a"}}`)
	sign := func(secret string) http.Header {
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		return http.Header{"X-Github-Event": {"push"}, "X-Github-Delivery": {"d1"}, "X-Hub-Signature-256": {"sha256=" + hex.EncodeToString(mac.Sum(nil))}}
	}
	lookup := secrets(map[string]string{"github|acme/shop": "repo-secret", "github": "provider-secret"})
	if _, err := New(Options{Secrets: lookup}).Parse("github", Request{Header: sign("provider-secret"), Body: body}); err != nil {
		t.Fatalf("provider secret without RepoScoped: %v", err)
	}
	if _, err := New(Options{Secrets: lookup}).Parse("github", Request{Header: sign("repo-secret"), Body: body}); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("repo secret without RepoScoped: want unauthorized, got %v", err)
	}
	if _, err := New(Options{Secrets: lookup, RepoScoped: true}).Parse("github", Request{Header: sign("repo-secret"), Body: body}); err != nil {
		t.Fatalf("repo secret with RepoScoped: %v", err)
	}
}
