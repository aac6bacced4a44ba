// Package jenkins holds the Jenkinsfiles of the dockmaster Jenkins kit as
// text templates: test, build and deploy jobs for one app. `dockmaster
// jenkins init` renders them; the shell they run lives in scripts/jenkins.
package jenkins

import (
	"bytes"
	"embed"
	"fmt"
	"regexp"
	"text/template"
)

//go:embed *.Jenkinsfile
var files embed.FS

// Names are the templates, in the order jobs run.
var Names = []string{"test.Jenkinsfile", "build.Jenkinsfile", "deploy.Jenkinsfile"}

// Values fill the templates. Credentials are Jenkins credential ids, never
// secrets: the Jenkinsfiles bind them with withCredentials.
type Values struct {
	App            string // app and stack name, e.g. java-service-1
	URL            string // dockmaster base URL
	Env            string // environment the deploy job upgrades
	Image          string // image repository the build job pushes, without tag
	TestCommand    string // the app's test command
	ScriptDir      string // where the kit's scripts are in the workspace
	KeyCredential  string // username/password credential: dockmaster access/secret key
	HookCredential string // secret text credential: the generic hook token
}

// safe limits values to what can sit in a Groovy single-quoted string.
var safe = regexp.MustCompile(`^[^'\\\n]*$`)

// Check refuses values that would break out of their Groovy strings.
func (v Values) Check() error {
	for name, s := range map[string]string{"app": v.App, "url": v.URL, "env": v.Env, "image": v.Image,
		"test command": v.TestCommand, "script dir": v.ScriptDir, "key credential": v.KeyCredential,
		"hook credential": v.HookCredential} {
		if s == "" {
			return fmt.Errorf("jenkins: %s is empty", name)
		}
		if !safe.MatchString(s) {
			return fmt.Errorf("jenkins: %s %q: quotes, backslashes and newlines are not allowed", name, s)
		}
	}
	return nil
}

// Render renders template name (one of Names) with v.
func Render(name string, v Values) ([]byte, error) {
	if err := v.Check(); err != nil {
		return nil, err
	}
	t, err := template.New(name).Option("missingkey=error").ParseFS(files, name)
	if err != nil {
		return nil, fmt.Errorf("jenkins: %w", err)
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, name, v); err != nil {
		return nil, fmt.Errorf("jenkins: %s: %w", name, err)
	}
	return b.Bytes(), nil
}
