package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
)

// BaseImage is the image every test image is built FROM. It holds a static
// busybox and symlinks for busyboxApplets; nothing can be pulled in CI.
// Beware: Debian's busybox-static `wget -T <secs>` dies with SIGSEGV (exit
// 139); use plain `wget -q -O - URL` (or nc) in health checks.
const BaseImage = "dockmaster-test/busybox:1"

// busyboxPath is where Debian's busybox-static installs the binary.
const busyboxPath = "/usr/bin/busybox"

// busyboxApplets get a /bin symlink in BaseImage. Keep in sync with
// APPLETS in scripts/setup.sh. (A function: no package-level mutable state.)
func busyboxApplets() []string {
	return []string{"sh", "echo", "sleep", "cat", "ls", "httpd", "nc", "wget",
		"env", "true", "false", "test", "printf", "mkdir", "rm", "cp", "mv", "ln", "chmod",
		"touch", "ps", "kill", "grep", "sed", "head", "tail", "wc", "sort", "tee", "date",
		"id", "hostname", "uname", "pwd"}
}

// imageTimeout bounds one import or build; all images here are a few MB.
const imageTimeout = 2 * time.Minute

// epoch is the mtime (Unix seconds) of every file the harness puts in a tar,
// so the same content gives the same layer digest on every daemon.
const epoch = 0

// BusyboxImage makes sure BaseImage exists on the daemon behind cli,
// importing it from /usr/bin/busybox when missing, and returns its reference.
// Safe to call from several test processes at once: a concurrent import only
// retags identical content.
func BusyboxImage(t testing.TB, cli *client.Client) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), imageTimeout)
	defer cancel()
	if err := ensureBusybox(ctx, cli); err != nil {
		t.Fatalf("testenv: base image %s on %s: %v", BaseImage, cli.DaemonHost(), err)
	}
	return BaseImage
}

func ensureBusybox(ctx context.Context, cli *client.Client) error {
	_, err := cli.ImageInspect(ctx, BaseImage)
	if err == nil {
		return nil
	}
	if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("inspect: %w", err)
	}
	bin, err := os.ReadFile(busyboxPath)
	if err != nil {
		return fmt.Errorf("read busybox (install busybox-static, see scripts/setup.sh): %w", err)
	}
	files := []tarEntry{
		{name: "bin/", mode: 0o755, dir: true},
		{name: "etc/", mode: 0o755, dir: true},
		{name: "tmp/", mode: 0o1777, dir: true},
		{name: "bin/busybox", mode: 0o755, body: bin},
	}
	for _, a := range busyboxApplets() {
		files = append(files, tarEntry{name: "bin/" + a, link: "busybox"})
	}
	ctxTar, err := makeTar(files)
	if err != nil {
		return err
	}
	rc, err := cli.ImageImport(ctx, image.ImportSource{Source: ctxTar, SourceName: "-"}, BaseImage, image.ImportOptions{})
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	defer rc.Close()
	if err := jsonmessage.DisplayJSONMessagesStream(rc, io.Discard, 0, false, nil); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	return nil
}

// BuildImage builds an image tagged ref on the daemon behind cli from
// in-memory files (path in the build context -> content); files must hold a
// "Dockerfile". BaseImage is made present first, so the Dockerfile may say
// FROM dockmaster-test/busybox:1; the legacy builder is used and never pulls.
// Returns ref. The image is left on the daemon: tags are shared between
// test processes, and harness hosts drop everything at cleanup anyway.
func BuildImage(t testing.TB, cli *client.Client, ref string, files map[string]string) string {
	t.Helper()
	if _, ok := files["Dockerfile"]; !ok {
		t.Fatalf("testenv: BuildImage %s: files has no \"Dockerfile\"", ref)
	}
	BusyboxImage(t, cli)
	ctx, cancel := context.WithTimeout(context.Background(), imageTimeout)
	defer cancel()
	if err := buildImage(ctx, cli, ref, files); err != nil {
		t.Fatalf("testenv: build %s on %s: %v", ref, cli.DaemonHost(), err)
	}
	return ref
}

func buildImage(ctx context.Context, cli *client.Client, ref string, files map[string]string) error {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	entries := make([]tarEntry, 0, len(names))
	for _, n := range names {
		mode := int64(0o644)
		if strings.HasPrefix(files[n], "#!") {
			mode = 0o755
		}
		entries = append(entries, tarEntry{name: n, mode: mode, body: []byte(files[n])})
	}
	buildCtx, err := makeTar(entries)
	if err != nil {
		return err
	}
	resp, err := cli.ImageBuild(ctx, buildCtx, build.ImageBuildOptions{
		Tags:        []string{ref},
		Version:     build.BuilderV1,
		Remove:      true,
		ForceRemove: true,
		Dockerfile:  "Dockerfile",
	})
	if err != nil {
		return fmt.Errorf("start build: %w", err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	if err := jsonmessage.DisplayJSONMessagesStream(resp.Body, &out, 0, false, nil); err != nil {
		return fmt.Errorf("%w\nbuild output:\n%s", err, out.String())
	}
	return nil
}

// HTTPServerImage returns dockmaster-test/web:<version> built on cli's daemon:
// its container runs `httpd -f -p 8080 -h /www` (busybox httpd, foreground)
// and serves /index.html and /healthz, both containing exactly version+"\n".
// version must be a valid tag (letters, digits, '.', '_', '-').
func HTTPServerImage(t testing.TB, cli *client.Client, version string) string {
	t.Helper()
	ref := "dockmaster-test/web:" + version
	return BuildImage(t, cli, ref, map[string]string{
		"Dockerfile": "FROM " + BaseImage + "\n" +
			"COPY www /www\n" +
			"LABEL io.dockmaster.test.version=" + version + "\n" +
			"EXPOSE 8080\n" +
			`CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]` + "\n",
		"www/index.html": version + "\n",
		"www/healthz":    version + "\n",
	})
}

type tarEntry struct {
	name string // slash path, relative; trailing slash for dirs is optional
	mode int64
	dir  bool
	link string // symlink target, if set
	body []byte
}

// makeTar writes entries, adding any missing parent directories, with root
// ownership and a fixed mtime.
func makeTar(entries []tarEntry) (*bytes.Reader, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	seen := map[string]bool{}
	var addDirs func(p string) error
	addDirs = func(p string) error {
		if p == "." || p == "/" || p == "" || seen[p] {
			return nil
		}
		if err := addDirs(path.Dir(p)); err != nil {
			return err
		}
		seen[p] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: 0o755, ModTime: time.Unix(epoch, 0)})
	}
	for _, e := range entries {
		name := strings.TrimSuffix(path.Clean(e.name), "/")
		if e.dir {
			if seen[name] {
				continue
			}
			if err := addDirs(path.Dir(name)); err != nil {
				return nil, fmt.Errorf("tar %s: %w", name, err)
			}
			seen[name] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: e.mode, ModTime: time.Unix(epoch, 0)}); err != nil {
				return nil, fmt.Errorf("tar %s: %w", name, err)
			}
			continue
		}
		if err := addDirs(path.Dir(name)); err != nil {
			return nil, fmt.Errorf("tar %s: %w", name, err)
		}
		h := &tar.Header{Name: name, Mode: e.mode, ModTime: time.Unix(epoch, 0), Typeflag: tar.TypeReg, Size: int64(len(e.body))}
		if e.link != "" {
			h = &tar.Header{Name: name, Mode: 0o777, ModTime: time.Unix(epoch, 0), Typeflag: tar.TypeSymlink, Linkname: e.link}
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("tar %s: %w", name, err)
		}
		if e.link == "" {
			if _, err := tw.Write(e.body); err != nil {
				return nil, fmt.Errorf("tar %s: %w", name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("tar: %w", err)
	}
	return bytes.NewReader(buf.Bytes()), nil
}
