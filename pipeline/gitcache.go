package pipeline

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
)

// GitCache keeps one bare repository per remote and fetches only what a
// commit needs: shallow first, deeper only when the commit is not a tip.
type GitCache struct {
	Dir string

	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

// NewGitCache caches repositories under dir.
func NewGitCache(dir string) *GitCache { return &GitCache{Dir: dir, locks: map[string]*sync.Mutex{}} }

func (g *GitCache) lock(key string) func() {
	g.mu.Lock()
	l, ok := g.locks[key]
	if !ok {
		l = &sync.Mutex{}
		g.locks[key] = l
	}
	g.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// Commit returns the commit sha of url, fetching ref if it is not cached.
func (g *GitCache) Commit(ctx context.Context, url, user, pass, ref, sha string) (*object.Commit, error) {
	sum := sha256.Sum256([]byte(url))
	key := hex.EncodeToString(sum[:8])
	defer g.lock(key)()
	dir := filepath.Join(g.Dir, key+".git")
	repo, err := git.PlainOpen(dir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		if repo, err = git.PlainInit(dir, true); err == nil {
			_, err = repo.CreateRemote(&gitconfig.RemoteConfig{Name: "origin", URLs: []string{url}})
		}
	}
	if err != nil {
		return nil, fmt.Errorf("git cache %s: %w", dir, err)
	}
	hash := plumbing.NewHash(sha)
	if c, err := repo.CommitObject(hash); err == nil {
		return c, nil
	}
	var auth transport.AuthMethod
	if user != "" || pass != "" {
		auth = &githttp.BasicAuth{Username: user, Password: pass}
	}
	if ref == "" {
		ref = "HEAD"
	}
	spec := gitconfig.RefSpec(fmt.Sprintf("+%s:refs/dockmaster/%s", ref, strings.TrimPrefix(ref, "refs/")))
	for _, depth := range []int{1, 0} { // shallow, then everything
		err := repo.FetchContext(ctx, &git.FetchOptions{RemoteName: "origin", RefSpecs: []gitconfig.RefSpec{spec}, Depth: depth, Auth: auth, Tags: git.NoTags, Force: true})
		if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
			return nil, fmt.Errorf("git fetch %s %s: %w", url, ref, err)
		}
		if c, err := repo.CommitObject(hash); err == nil {
			return c, nil
		}
	}
	return nil, fmt.Errorf("git: commit %s is not on %s of %s", sha, ref, url)
}

// TarTree streams the files of commit under dir (a path in the repo, "" or
// "." for the root) as a tar archive, as a Docker build context.
func TarTree(c *object.Commit, dir string) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(writeTree(c, dir, pw))
	}()
	return pr
}

func writeTree(c *object.Commit, dir string, w io.Writer) error {
	tree, err := c.Tree()
	if err != nil {
		return err
	}
	dir = strings.Trim(path.Clean("/"+dir), "/")
	if dir != "" {
		if tree, err = tree.Tree(dir); err != nil {
			return fmt.Errorf("build context %q: %w", dir, err)
		}
	}
	tw := tar.NewWriter(w)
	err = tree.Files().ForEach(func(f *object.File) error {
		hdr := &tar.Header{Name: f.Name, Mode: 0o644, Size: f.Size, ModTime: c.Committer.When}
		switch f.Mode {
		case filemode.Executable:
			hdr.Mode = 0o755
		case filemode.Symlink:
			target, err := f.Contents()
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeSymlink, target, 0
			return tw.WriteHeader(hdr)
		case filemode.Submodule:
			return nil
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		r, err := f.Reader()
		if err != nil {
			return err
		}
		defer r.Close()
		_, err = io.Copy(tw, r)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// Checkout writes the files of commit into dir (created), for commands
// that need a working tree.
func Checkout(c *object.Commit, dir string) error {
	pr := TarTree(c, "")
	defer pr.Close()
	tr := tar.NewReader(pr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		target := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeSymlink {
			if err := os.Symlink(hdr.Linkname, target); err != nil {
				return err
			}
			continue
		}
		f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(hdr.Mode))
		if err != nil {
			return err
		}
		_, err = io.Copy(f, tr)
		f.Close()
		if err != nil {
			return err
		}
	}
}
