package webhooks

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// fuzzParse feeds body to one endpoint with fixed headers. Decoders must never
// panic, and must return either a usable delivery or a typed error.
func fuzzParse(f *testing.F, endpoint string, header http.Header, seeds ...string) {
	for _, s := range seeds {
		for _, dir := range []string{"testdata", sharedDirOrEmpty()} {
			if dir == "" {
				continue
			}
			if b, err := os.ReadFile(filepath.Join(dir, s)); err == nil {
				f.Add(b)
			}
		}
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`payload=%7B%7D`))
	r := New(Options{AllowUnsigned: true})
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := r.Parse(endpoint, Request{Header: header.Clone(), Body: body})
		if err != nil {
			if d != nil {
				t.Fatalf("delivery returned with error %v", err)
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrIgnored) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		if d == nil || d.ID == "" || d.Provider == "" {
			t.Fatalf("incomplete delivery %+v", d)
		}
		switch d.Event.Kind {
		case KindPush, KindTag:
			for _, p := range d.Event.Pushes() {
				if p.Repo.FullName == "" || (p.Branch == "") == (p.Tag == "") {
					t.Fatalf("bad push %+v", p)
				}
			}
		case KindBuild:
			if d.Event.Build == nil || d.Event.Build.Job == "" || d.Event.Build.Number <= 0 {
				t.Fatalf("bad build %+v", d.Event.Build)
			}
		case KindImage:
			if len(d.Event.Images) == 0 {
				t.Fatal("image event without images")
			}
		case KindPing:
		default:
			t.Fatalf("unknown kind %q", d.Event.Kind)
		}
	})
}

func sharedDirOrEmpty() string {
	for _, d := range []string{filepath.Join(os.Getenv("DOCKMASTER_SHARED"), "fixtures", "webhooks"), filepath.Join("..", "..", "shared", "fixtures", "webhooks")} {
		if _, err := os.Stat(filepath.Join(d, "github")); err == nil {
			return d
		}
	}
	return ""
}

func FuzzGitHub(f *testing.F) {
	fuzzParse(f, "github", http.Header{"X-Github-Event": {"push"}},
		"github/push.json", "github/push-tag.json", "github/push-branch-deleted.json", "github/push-forced.form")
}

func FuzzGitHubPing(f *testing.F) {
	fuzzParse(f, "github", http.Header{"X-Github-Event": {"ping"}}, "github/ping.json")
}

func FuzzGitLab(f *testing.F) {
	fuzzParse(f, "gitlab", http.Header{"X-Gitlab-Event": {"Push Hook"}},
		"gitlab/push.json", "gitlab/tag-push.json", "gitlab/tag-push-v2.json")
}

func FuzzGitea(f *testing.F) {
	fuzzParse(f, "gitea", http.Header{"X-Gitea-Event": {"push"}, "Content-Type": {"application/x-www-form-urlencoded"}},
		"gitea/push.form")
	// JSON variants are covered by FuzzGogs and FuzzForgejo.
}

func FuzzGogs(f *testing.F) {
	fuzzParse(f, "gogs", http.Header{"X-Gogs-Event": {"push"}}, "gogs/push.json", "gitea/push.json")
}

func FuzzForgejo(f *testing.F) {
	fuzzParse(f, "gitea", http.Header{"X-Forgejo-Event": {"push"}}, "forgejo/push-tag.json")
}

func FuzzBitbucketCloud(f *testing.F) {
	fuzzParse(f, "bitbucket", http.Header{"X-Event-Key": {"repo:push"}, "X-Hook-Uuid": {"u"}},
		"bitbucket-cloud/repo-push.json", "bitbucket-cloud/push-tag-and-delete.json")
}

func FuzzBitbucketServer(f *testing.F) {
	fuzzParse(f, "bitbucket", http.Header{"X-Event-Key": {"repo:refs_changed"}},
		"bitbucket-server/refs-changed.json")
}

func FuzzJenkins(f *testing.F) {
	fuzzParse(f, "jenkins", http.Header{"Content-Type": {"application/json;charset=UTF-8"}},
		"jenkins/notification-started.json", "jenkins/notification-completed-success.json",
		"jenkins/notification-finished-failure-legacy.json", "jenkins/notification-started-legacy-empty-status.json",
		"jenkins/finished-legacy-folder.json")
}

func FuzzRegistry(f *testing.F) {
	fuzzParse(f, "registry", http.Header{}, "registry/push.json", "registry/mixed.json")
}

func FuzzGeneric(f *testing.F) {
	fuzzParse(f, "generic", http.Header{}, "generic/build.json")
}
