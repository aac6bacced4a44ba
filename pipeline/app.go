package pipeline

import (
	"fmt"
	"path"
	"regexp"
	"strings"
)

// App is what the config declares about one application.
type App struct {
	Name string
	Repo Repo
	// Rules map refs to a version scheme and a target environment; the
	// first matching rule wins. No rule matching means the push is ignored.
	Rules []BranchRule
	// ComposeDir holds docker-compose.yml and rancher-compose.yml in the
	// repository; FallbackDir is used when the repository has none.
	ComposeDir  string
	FallbackDir string
	// Image is the repository in the registry, e.g. registry:5000/java-service-1.
	Image string
	// Environments in promotion order, e.g. dev, stage, prod.
	Environments []string
	Test         StageConfig
	Build        StageConfig
	// Supersede cancels older queued runs of the same branch on a new push.
	Supersede bool
}

// Repo is the app's git repository.
type Repo struct {
	URL      string // clone URL
	FullName string // owner/name as webhooks report it
	Username string
	Password string // or token
}

// BranchRule matches a branch or tag by glob (path.Match syntax, where
// "release/*" matches "release/1.0.1").
type BranchRule struct {
	Branch string // glob on branch names; empty when Tag is set
	Tag    string // glob on tag names
	// Version is how the version is derived: "auto" (default), "branch"
	// (the part after the last /), "tag" (tag name without a leading v),
	// or "sha" (<branch>-<short sha>).
	Version string
	// Environment the ticket targets; empty means the first of the app's.
	Environment string
}

// StageConfig says which executor runs a stage and how.
type StageConfig struct {
	Executor string // none, jenkins, command (test only), docker (build only)
	// Jenkins executor.
	Job    string
	Params map[string]string
	// Command executor: the command, run in Image with the checkout at /src.
	Command []string
	RunIn   string
	// Docker executor: Dockerfile and context inside the repository.
	Dockerfile string
	Context    string
}

// Validate reports the first problem, naming the field.
func (a *App) Validate() error {
	if a.Name == "" {
		return fmt.Errorf("app: name is empty")
	}
	if a.Repo.URL == "" && a.Repo.FullName == "" {
		return fmt.Errorf("app %s: repo.url or repo.full_name is required", a.Name)
	}
	if len(a.Environments) == 0 {
		return fmt.Errorf("app %s: environments: at least one is required", a.Name)
	}
	for i, r := range a.Rules {
		if (r.Branch == "") == (r.Tag == "") {
			return fmt.Errorf("app %s: rules[%d]: set exactly one of branch or tag", a.Name, i)
		}
		for _, g := range []string{r.Branch, r.Tag} {
			if _, err := path.Match(g, ""); err != nil {
				return fmt.Errorf("app %s: rules[%d]: bad glob %q: %w", a.Name, i, g, err)
			}
		}
		switch r.Version {
		case "", "auto", "branch", "tag", "sha":
		default:
			return fmt.Errorf("app %s: rules[%d].version: want auto, branch, tag or sha, got %q", a.Name, i, r.Version)
		}
		if r.Environment != "" && !contains(a.Environments, r.Environment) {
			return fmt.Errorf("app %s: rules[%d].environment %q is not in the app's environments %v", a.Name, i, r.Environment, a.Environments)
		}
	}
	switch a.Test.Executor {
	case "", "none", "jenkins", "command":
	default:
		return fmt.Errorf("app %s: stages.test.executor: want none, jenkins or command, got %q", a.Name, a.Test.Executor)
	}
	switch a.Build.Executor {
	case "", "none", "jenkins", "docker":
	default:
		return fmt.Errorf("app %s: stages.build.executor: want none, jenkins or docker, got %q", a.Name, a.Build.Executor)
	}
	for _, s := range []struct {
		name string
		c    StageConfig
	}{{"test", a.Test}, {"build", a.Build}} {
		if s.c.Executor == "jenkins" && s.c.Job == "" {
			return fmt.Errorf("app %s: stages.%s.job is required for the jenkins executor", a.Name, s.name)
		}
	}
	if a.Test.Executor == "command" && len(a.Test.Command) == 0 {
		return fmt.Errorf("app %s: stages.test.command is required for the command executor", a.Name)
	}
	if a.Build.Executor == "docker" && a.Image == "" {
		return fmt.Errorf("app %s: image is required for the docker build executor", a.Name)
	}
	return nil
}

// MatchesRepo reports whether a webhook's repository is this app's.
func (a *App) MatchesRepo(fullName, cloneURL string) bool {
	if a.Repo.FullName != "" && strings.EqualFold(a.Repo.FullName, fullName) {
		return true
	}
	return a.Repo.URL != "" && cloneURL != "" && normalizeURL(a.Repo.URL) == normalizeURL(cloneURL)
}

func normalizeURL(u string) string {
	u = strings.TrimSuffix(strings.TrimSuffix(strings.ToLower(u), "/"), ".git")
	return u
}

// Match finds the rule for a branch or tag and derives version and target
// environment. ok is false when no rule matches.
func (a *App) Match(branch, tag, commit string) (version, env string, ok bool) {
	for _, r := range a.Rules {
		var name string
		switch {
		case r.Branch != "" && branch != "":
			name = branch
			if m, _ := path.Match(r.Branch, branch); !m {
				continue
			}
		case r.Tag != "" && tag != "":
			name = tag
			if m, _ := path.Match(r.Tag, tag); !m {
				continue
			}
		default:
			continue
		}
		env = r.Environment
		if env == "" {
			env = a.Environments[0]
		}
		return DeriveVersion(r.Version, name, tag != "", commit), env, true
	}
	return "", "", false
}

var semverish = regexp.MustCompile(`^v?\d+(\.\d+)*([-+][0-9A-Za-z.-]+)?$`)

// DeriveVersion turns a branch or tag name into a version:
// release/1.0.1 -> 1.0.1, v1.2.3 -> 1.2.3, feature/x -> feature-x-<sha7>.
func DeriveVersion(scheme, name string, isTag bool, commit string) string {
	short := commit
	if len(short) > 7 {
		short = short[:7]
	}
	last := name[strings.LastIndex(name, "/")+1:]
	sha := func() string { return sanitizeTag(name) + "-" + short }
	switch scheme {
	case "branch":
		return sanitizeTag(last)
	case "tag":
		return sanitizeTag(strings.TrimPrefix(last, "v"))
	case "sha":
		return sha()
	}
	if isTag || semverish.MatchString(last) && strings.Contains(name, "/") {
		return sanitizeTag(strings.TrimPrefix(last, "v"))
	}
	return sha()
}

var tagUnsafe = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// sanitizeTag makes s a valid Docker tag (at most 128 of [A-Za-z0-9_.-]).
func sanitizeTag(s string) string {
	s = strings.Trim(tagUnsafe.ReplaceAllString(s, "-"), "-.")
	if len(s) > 128 {
		s = s[:128]
	}
	return s
}

// NextEnvironment is the environment after env in promotion order, or "".
func (a *App) NextEnvironment(env string) string {
	for i, e := range a.Environments {
		if e == env && i+1 < len(a.Environments) {
			return a.Environments[i+1]
		}
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// trimTag drops the :tag from an image reference (not a registry :port).
func trimTag(image string) string {
	slash := strings.LastIndex(image, "/")
	if colon := strings.LastIndex(image, ":"); colon > slash {
		return image[:colon]
	}
	return image
}
