package deploys

import (
	"context"
	"errors"
	"github.com/dockmaster/dockmaster/internal/testenv"
	"os"
	"strings"
	"testing"

	"github.com/dockmaster/dockmaster/pipeline"
)

// gitRepo makes a repository whose main has one commit and whose branch
// release/1.0.1 (and tag v1.0.2) each add a commit main never sees, so a
// fetch of HEAD cannot find them. It returns the URL and the commits.
func gitRepo(t *testing.T) (url, branchSHA, tagSHA string) {
	t.Helper()
	repo := testenv.NewGitRepo(t)
	dir, git, write := repo.Dir, repo.Git, repo.Write
	write("README", "main\n")
	git("add", ".")
	git("commit", "-q", "-m", "main")
	git("checkout", "-q", "-b", "release/1.0.1")
	write("docker/docker-compose.yml", "branch\n")
	git("add", ".")
	git("commit", "-q", "-m", "release")
	branchSHA = git("rev-parse", "HEAD")
	git("checkout", "-q", "main")
	git("checkout", "-q", "--detach")
	write("docker/docker-compose.yml", "tag\n")
	git("add", ".")
	git("commit", "-q", "-m", "tagged")
	tagSHA = git("rev-parse", "HEAD")
	git("tag", "v1.0.2")
	git("checkout", "-q", "main")
	return "file://" + dir, branchSHA, tagSHA
}

// TestGitFilesFetchesTheTicketsRef: the commit of a release branch or tag
// that HEAD does not reach is found through the ticket's branch.
func TestGitFilesFetchesTheTicketsRef(t *testing.T) {
	url, branchSHA, tagSHA := gitRepo(t)
	g := GitFiles{Cache: pipeline.NewGitCache(t.TempDir())}
	a := &pipeline.App{Name: "web", Repo: pipeline.Repo{URL: url}}
	ctx := context.Background()

	for _, c := range []struct{ branch, sha, want string }{
		{"release/1.0.1", branchSHA, "branch\n"},
		{"v1.0.2", tagSHA, "tag\n"},
	} {
		b, err := g.File(ctx, a, c.branch, c.sha, "docker/docker-compose.yml")
		if err != nil || string(b) != c.want {
			t.Errorf("File(%s, %.7s) = %q, %v; want %q", c.branch, c.sha, b, err, c.want)
		}
	}
	if _, err := g.File(ctx, a, "release/1.0.1", branchSHA, "docker/rancher-compose.yml"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want os.ErrNotExist", err)
	}
	// Without the branch, HEAD (main) does not reach the commit: the error says so.
	fresh := GitFiles{Cache: pipeline.NewGitCache(t.TempDir())}
	if _, err := fresh.File(ctx, a, "", branchSHA, "docker/docker-compose.yml"); err == nil || !strings.Contains(err.Error(), "is not on HEAD") {
		t.Errorf("commit off HEAD without a branch: %v, want an error naming HEAD", err)
	}
}
