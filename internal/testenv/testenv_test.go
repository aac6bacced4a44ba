package testenv

import (
	"archive/tar"
	"errors"
	"io"
	"net"
	"os/exec"
	"strconv"
	"testing"
)

func TestClaimSlotIsExclusiveUntilClosed(t *testing.T) {
	a, fa, err := claimSlot()
	if err != nil {
		t.Fatal(err)
	}
	b, fb, err := claimSlot()
	if err != nil {
		fa.Close()
		t.Fatal(err)
	}
	defer fb.Close()
	if a == b {
		t.Fatalf("two live claims got the same slot %d", a)
	}
	// Another process must see a's slot as taken: flock(1) exits 1 with -n.
	if flock, err := exec.LookPath("flock"); err == nil {
		err := exec.Command(flock, "-n", StateRoot+"/slot-"+strconv.Itoa(a)+".lock", "true").Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Errorf("flock -n on held slot %d from another process: %v, want exit 1", a, err)
		}
	}
	fa.Close()
	c, fc, err := claimSlot()
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	if c > a {
		t.Errorf("released slot %d not reused: got %d", a, c)
	}
}

func TestMakeTarAddsParentsAndKeepsLinks(t *testing.T) {
	r, err := makeTar([]tarEntry{
		{name: "www/sub/index.html", mode: 0o644, body: []byte("v1\n")},
		{name: "bin/sh", link: "busybox"},
		{name: "tmp/", mode: 0o1777, dir: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*tar.Header{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h
	}
	for _, dir := range []string{"www/", "www/sub/", "bin/", "tmp/"} {
		if h, ok := got[dir]; !ok || h.Typeflag != tar.TypeDir {
			t.Errorf("missing directory entry %s (have %v)", dir, keys(got))
		}
	}
	if h := got["bin/sh"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "busybox" {
		t.Errorf("bin/sh = %+v, want symlink to busybox", h)
	}
	if h := got["www/sub/index.html"]; h == nil || h.Size != 3 || h.ModTime.Unix() != epoch {
		t.Errorf("www/sub/index.html = %+v, want 3 bytes at the fixed mtime", h)
	}
	if h := got["tmp/"]; h == nil || h.Mode != 0o1777 {
		t.Errorf("tmp/ = %+v, want mode 1777", h)
	}
}

func keys(m map[string]*tar.Header) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func TestUnescapeMountPath(t *testing.T) {
	for in, want := range map[string]string{
		`/tmp/a`:             "/tmp/a",
		`/tmp/with\040space`: "/tmp/with space",
		`/tmp/tab\011x`:      "/tmp/tab\tx",
		`/tmp/trailing\`:     `/tmp/trailing\`,
	} {
		if got := unescapeMountPath(in); got != want {
			t.Errorf("unescapeMountPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFreePortIsBindable(t *testing.T) {
	p := FreePort(t)
	if p <= 0 || p > 65535 {
		t.Fatalf("FreePort = %d", p)
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		t.Fatalf("bind FreePort's %d: %v", p, err)
	}
	l.Close()
}
