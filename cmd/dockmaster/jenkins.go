package main

import (
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"

	jenkinsscripts "github.com/dockmaster/dockmaster/scripts/jenkins"
	"github.com/dockmaster/dockmaster/templates/jenkins"
)

// runJenkins is `dockmaster jenkins init`: it writes the kit's three
// Jenkinsfiles for one app, and the scripts they call, into a directory
// (normally the app's repository root).
func runJenkins(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "init" {
		return usagef("usage: dockmaster jenkins init --app APP [--out DIR] [flags]")
	}
	fs := newFlags("jenkins init", "jenkins init --app APP [--out DIR] [--env ENV] [--url URL] [--image REPO] [--force]", stderr)
	app := fs.String("app", "", "app (and stack) name, e.g. java-service-1")
	out := fs.String("out", ".", "directory to write into (the app's repository root)")
	v := jenkins.Values{}
	fs.StringVar(&v.URL, "url", envOr("http://127.0.0.1:8080", "DOCKMASTER_URL"), "dockmaster URL the jobs talk to")
	fs.StringVar(&v.Env, "env", "prod", "environment the deploy job upgrades")
	fs.StringVar(&v.Image, "image", "", "image repository the build job pushes (default registry.local/APP)")
	fs.StringVar(&v.TestCommand, "test-command", "./gradlew test", "the app's test command")
	fs.StringVar(&v.ScriptDir, "script-dir", "dockmaster-ci", "directory of the kit's scripts, relative to the workspace")
	fs.StringVar(&v.KeyCredential, "key-credential", "dockmaster-key", "Jenkins username/password credential id holding the dockmaster API key")
	fs.StringVar(&v.HookCredential, "hook-credential", "dockmaster-hook-token", "Jenkins secret text credential id holding the generic hook token")
	force := fs.Bool("force", false, "overwrite existing files")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *app == "" {
		return usagef("jenkins init: --app is required")
	}
	v.App = *app
	if v.Image == "" {
		v.Image = "registry.local/" + *app
	}
	if err := v.Check(); err != nil {
		return usageError{err}
	}
	files := map[string][]byte{}
	for _, name := range jenkins.Names {
		b, err := jenkins.Render(name, v)
		if err != nil {
			return err
		}
		files[name] = b
	}
	scripts, err := iofs.Glob(jenkinsscripts.FS, "*.sh")
	if err != nil {
		return err
	}
	for _, name := range scripts {
		b, err := jenkinsscripts.FS.ReadFile(name)
		if err != nil {
			return err
		}
		files[filepath.Join(v.ScriptDir, name)] = b
	}
	if !*force {
		for name := range files {
			if _, err := os.Stat(filepath.Join(*out, name)); err == nil {
				return fmt.Errorf("jenkins init: %s exists (pass --force to overwrite)", filepath.Join(*out, name))
			} else if !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	for _, name := range append(append([]string{}, jenkins.Names...), scriptPaths(v.ScriptDir, scripts)...) {
		path := filepath.Join(*out, name)
		mode := os.FileMode(0o644)
		if filepath.Ext(name) == ".sh" {
			mode = 0o755
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, files[name], mode); err != nil {
			return err
		}
		if err := os.Chmod(path, mode); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "wrote", path)
	}
	fmt.Fprintf(stdout, "Jenkins credentials to create: %s (username/password: a dockmaster key of %s) and %s (secret text: the generic hook token)\n",
		v.KeyCredential, v.Env, v.HookCredential)
	return nil
}

func scriptPaths(dir string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = filepath.Join(dir, n)
	}
	return out
}
