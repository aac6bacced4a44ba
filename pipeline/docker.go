package pipeline

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/docker/docker/pkg/stdcopy"
)

// RunLabel marks images and test containers with the run key that made
// them, so a resumed engine finds its own work instead of redoing it.
const RunLabel = "io.dockmaster.run"

// RegistryAuth is the login for the image registry.
type RegistryAuth struct {
	Username string
	Password string
}

// encoded is the X-Registry-Auth header value.
func (a RegistryAuth) encoded(serverAddress string) string {
	if a.Username == "" && a.Password == "" {
		return ""
	}
	b, _ := json.Marshal(registry.AuthConfig{Username: a.Username, Password: a.Password, ServerAddress: serverAddress})
	return base64.URLEncoding.EncodeToString(b)
}

// DockerBuilder is the built-in build executor: go-git checkout, Docker
// Engine API build with the context streamed as tar, push with auth.
type DockerBuilder struct {
	Docker *client.Client
	Git    *GitCache
	Auth   RegistryAuth
}

// Build implements Builder.
func (b *DockerBuilder) Build(ctx context.Context, req BuildRequest) (BuildResult, error) {
	res := BuildResult{Image: req.Image}
	var log strings.Builder
	if !b.builtBefore(ctx, req) {
		commit, err := b.Git.Commit(ctx, req.RepoURL, req.Username, req.Password, req.Ref, req.Commit)
		if err != nil {
			return res, err
		}
		dockerfile := req.Dockerfile
		if dockerfile == "" {
			dockerfile = "Dockerfile"
		}
		version := req.Version
		buildCtx := TarTree(commit, req.Context)
		defer buildCtx.Close()
		resp, err := b.Docker.ImageBuild(ctx, buildCtx, types.ImageBuildOptions{
			Tags:       []string{req.Image},
			Dockerfile: dockerfile,
			BuildArgs:  map[string]*string{"VERSION": &version},
			Labels: map[string]string{
				"org.opencontainers.image.revision": req.Commit,
				"org.opencontainers.image.source":   req.RepoURL,
				"org.opencontainers.image.version":  req.Version,
				RunLabel:                            req.Key,
			},
			Remove: true, ForceRemove: true,
		})
		if err != nil {
			return res, fmt.Errorf("docker build: %w", err)
		}
		err = readStream(resp.Body, &log, nil)
		resp.Body.Close()
		res.Log = log.String()
		if err != nil {
			return res, fmt.Errorf("docker build: %w", err)
		}
	} else {
		log.WriteString("image " + req.Image + " already built for run " + req.Key + "; pushing again\n")
	}
	rc, err := b.Docker.ImagePush(ctx, req.Image, image.PushOptions{RegistryAuth: b.Auth.encoded(registryHost(req.Image))})
	if err != nil {
		res.Log = log.String()
		return res, fmt.Errorf("docker push %s: %w", req.Image, err)
	}
	err = readStream(rc, &log, func(aux json.RawMessage) {
		var a struct{ Digest string }
		if json.Unmarshal(aux, &a) == nil && a.Digest != "" {
			res.Digest = a.Digest
		}
	})
	rc.Close()
	res.Log = log.String()
	if err != nil {
		return res, fmt.Errorf("docker push %s: %w", req.Image, err)
	}
	if res.Digest == "" {
		return res, fmt.Errorf("docker push %s: the registry reported no digest", req.Image)
	}
	return res, nil
}

// builtBefore looks for the image this run key already built.
func (b *DockerBuilder) builtBefore(ctx context.Context, req BuildRequest) bool {
	imgs, err := b.Docker.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", RunLabel+"="+req.Key), filters.Arg("reference", req.Image))})
	return err == nil && len(imgs) > 0
}

// readStream copies a Docker JSON message stream to log as text and
// returns the stream's error line as an error.
func readStream(r io.Reader, log io.Writer, onAux func(json.RawMessage)) error {
	dec := json.NewDecoder(r)
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if m.Error != nil {
			fmt.Fprintln(log, "ERROR:", m.Error.Message)
			return errors.New(strings.TrimSpace(m.Error.Message))
		}
		switch {
		case m.Stream != "":
			io.WriteString(log, m.Stream)
		case m.Status != "" && m.ID != "":
			fmt.Fprintf(log, "%s: %s\n", m.ID, m.Status)
		case m.Status != "":
			fmt.Fprintln(log, m.Status)
		}
		if m.Aux != nil && onAux != nil {
			onAux(*m.Aux)
		}
	}
}

// registryHost is the registry part of an image reference.
func registryHost(ref string) string {
	first, _, ok := strings.Cut(ref, "/")
	if ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return first
	}
	return "docker.io"
}

// DockerTester is the built-in test executor: the command runs in a
// container on the local engine with the checkout at /src.
type DockerTester struct {
	Docker  *client.Client
	Git     *GitCache
	WorkDir string // checkouts go here
}

// Test implements Tester.
func (d *DockerTester) Test(ctx context.Context, req TestRequest) (int, string, error) {
	name := "dockmaster-test-" + strings.ReplaceAll(req.Key, ".", "-")
	id, err := d.existing(ctx, name, req.Key)
	if err != nil {
		return 0, "", err
	}
	src := filepath.Join(d.WorkDir, name)
	if id == "" {
		commit, err := d.Git.Commit(ctx, req.RepoURL, req.Username, req.Password, req.Ref, req.Commit)
		if err != nil {
			return 0, "", err
		}
		os.RemoveAll(src)
		if err := Checkout(commit, src); err != nil {
			return 0, "", fmt.Errorf("checkout: %w", err)
		}
		created, err := d.Docker.ContainerCreate(ctx, &container.Config{Image: req.Image, Cmd: req.Command, WorkingDir: "/src",
			Labels: map[string]string{RunLabel: req.Key}},
			&container.HostConfig{Binds: []string{src + ":/src"}}, nil, nil, name)
		if err != nil {
			return 0, "", fmt.Errorf("test container: %w", err)
		}
		id = created.ID
		if err := d.Docker.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
			return 0, "", fmt.Errorf("test container: %w", err)
		}
	}
	waitC, errC := d.Docker.ContainerWait(ctx, id, container.WaitConditionNotRunning)
	var code int
	select {
	case w := <-waitC:
		code = int(w.StatusCode)
	case err := <-errC:
		return 0, "", fmt.Errorf("test container: %w", err)
	}
	var log bytes.Buffer
	if rc, err := d.Docker.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true}); err == nil {
		stdcopy.StdCopy(&log, &log, rc)
		rc.Close()
	}
	d.Docker.ContainerRemove(ctx, id, container.RemoveOptions{Force: true})
	os.RemoveAll(src)
	return code, log.String(), nil
}

// existing finds the test container a previous attempt left behind.
func (d *DockerTester) existing(ctx context.Context, name, key string) (string, error) {
	cs, err := d.Docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", RunLabel+"="+key))})
	if err != nil {
		return "", fmt.Errorf("test container: %w", err)
	}
	for _, c := range cs {
		for _, n := range c.Names {
			if strings.TrimPrefix(n, "/") == name {
				return c.ID, nil
			}
		}
	}
	return "", nil
}
