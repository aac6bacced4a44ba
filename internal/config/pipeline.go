package config

import (
	"fmt"
	"strconv"
)

// Pipeline configures the apps and what their stages use.
type Pipeline struct {
	// TicketPrefix names tickets, e.g. DEPLOY-111.
	TicketPrefix string `yaml:"ticket_prefix"`
	// JenkinsPollAfter is how long a Jenkins stage waits for its webhook
	// before polling the build.
	JenkinsPollAfter Duration `yaml:"jenkins_poll_after"`
	Jenkins          Jenkins  `yaml:"jenkins"`
	Registry         Registry `yaml:"registry"`
	// Builder is the Docker engine that builds images and runs test commands.
	Builder string `yaml:"builder"`
	Apps    []App  `yaml:"apps"`
}

// Jenkins is the remote API login (a user and an API token).
type Jenkins struct {
	URL   string `yaml:"url"`
	User  string `yaml:"user"`
	Token Secret `yaml:"token"`
}

// Registry is where built images are pushed.
type Registry struct {
	Username string `yaml:"username"`
	Password Secret `yaml:"password"`
}

// App declares one application.
type App struct {
	Name string  `yaml:"name"`
	Repo AppRepo `yaml:"repo"`
	// Rules map branches and tags to versions and environments.
	Rules   []AppRule  `yaml:"rules"`
	Compose AppCompose `yaml:"compose"`
	// Image is the repository in the registry, e.g. 127.0.0.1:5000/java-service-1.
	Image string `yaml:"image"`
	// Environments in promotion order.
	Environments []string  `yaml:"environments"`
	Stages       AppStages `yaml:"stages"`
	// Supersede cancels older queued runs of a branch on a newer push (default true).
	Supersede *bool `yaml:"supersede"`
}

// AppRepo is the app's git repository.
type AppRepo struct {
	URL      string `yaml:"url"`
	FullName string `yaml:"full_name"`
	Username string `yaml:"username"`
	Password Secret `yaml:"password"`
}

// AppRule is one branch or tag rule.
type AppRule struct {
	Branch      string `yaml:"branch"`
	Tag         string `yaml:"tag"`
	Version     string `yaml:"version"` // auto, branch, tag, sha
	Environment string `yaml:"environment"`
}

// AppCompose locates docker-compose.yml and rancher-compose.yml.
type AppCompose struct {
	Dir         string `yaml:"dir"`          // in the repository, default docker
	FallbackDir string `yaml:"fallback_dir"` // on dockmaster's disk
}

// AppStages picks an executor per stage.
type AppStages struct {
	Test  AppStage `yaml:"test"`
	Build AppStage `yaml:"build"`
}

// AppStage is one stage's executor and its settings.
type AppStage struct {
	Executor   string            `yaml:"executor"` // none, jenkins, command (test), docker (build)
	Job        string            `yaml:"job"`
	Params     map[string]string `yaml:"params"`
	Command    []string          `yaml:"command"`
	Image      string            `yaml:"image"` // command executor: image the command runs in
	Dockerfile string            `yaml:"dockerfile"`
	Context    string            `yaml:"context"`
}

func (c *Config) validatePipeline(at func(msg string, path ...string) error) error {
	seen := map[string]bool{}
	for i, a := range c.Pipeline.Apps {
		idx := strconv.Itoa(i)
		if !nameRe.MatchString(a.Name) {
			return at(fmt.Sprintf("app name %q: use letters, digits, ., - and _", a.Name), "pipeline", "apps", idx, "name")
		}
		if seen[a.Name] {
			return at(fmt.Sprintf("app %q declared twice", a.Name), "pipeline", "apps", idx, "name")
		}
		seen[a.Name] = true
		if err := a.Repo.Password.check(); err != nil {
			return at(err.Error(), "pipeline", "apps", idx, "repo", "password")
		}
	}
	if err := c.Pipeline.Jenkins.Token.check(); err != nil {
		return at(err.Error(), "pipeline", "jenkins", "token")
	}
	if err := c.Pipeline.Registry.Password.check(); err != nil {
		return at(err.Error(), "pipeline", "registry", "password")
	}
	return nil
}
