package config

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/robfig/cron/v3"
)

// Deploys configures deploy windows, approvals, held upgrades and their
// notifications, per environment with per-app overrides.
type Deploys struct {
	// LinkKey signs approval links (default: the auth signing key).
	LinkKey Secret `yaml:"link_key"`
	// LinkTTL is how long an approval link works (default 24h).
	LinkTTL Duration `yaml:"link_ttl"`
	// Tick is how often due deploys and held upgrades are looked at (default 5s).
	Tick Duration `yaml:"tick"`
	// Groups name sets of users for approval policies.
	Groups map[string][]string `yaml:"groups"`
	// Stacks maps an app to its stack name (default: the app name lower-cased).
	Stacks map[string]string `yaml:"stacks"`
	// Environments by name; an environment not listed deploys immediately,
	// with one confirmation to finish.
	Environments map[string]DeployPolicy `yaml:"environments"`
}

// DeployPolicy is one environment's policy; Apps override it per app
// (a set section replaces the environment's section of that name).
type DeployPolicy struct {
	Windows  *DeployWindows          `yaml:"windows"`
	Approval *DeployApproval         `yaml:"approval"` // before the deploy
	Finish   *DeployApproval         `yaml:"finish"`   // to finish a held upgrade
	Hold     *DeployHold             `yaml:"hold"`
	Notify   *DeployNotify           `yaml:"notify"`
	LinkOnly *bool                   `yaml:"link_only"`   // links act without a login
	Promote  *bool                   `yaml:"promote"`     // open the next environment's ticket on finish (default true)
	Jenkins  string                  `yaml:"jenkins_job"` // deploy by this Jenkins job (VERSION parameter) instead of the built-in deployer
	Apps     map[string]DeployPolicy `yaml:"apps"`
}

// DeployWindows: immediate, or allow windows; deny windows (freezes) apply to both.
type DeployWindows struct {
	Immediate bool           `yaml:"immediate"`
	Allow     []DeployWindow `yaml:"allow"`
	Deny      []DeployWindow `yaml:"deny"`
	Jitter    Duration       `yaml:"jitter"`
}

// DeployWindow is cron+duration+zone, or (deny only) from/to dates in RFC 3339 or YYYY-MM-DD.
type DeployWindow struct {
	Cron     string   `yaml:"cron"`
	Duration Duration `yaml:"duration"`
	Zone     string   `yaml:"zone"`
	From     string   `yaml:"from"`
	To       string   `yaml:"to"`
	Reason   string   `yaml:"reason"`
}

// DeployApproval is N distinct approvers from named groups.
type DeployApproval struct {
	Required   int      `yaml:"required"`
	Groups     []string `yaml:"groups"`
	ForbidSelf bool     `yaml:"forbid_self"`
	Deadline   Duration `yaml:"deadline"`
}

// DeployHold is what happens to a held upgrade without an answer.
type DeployHold struct {
	Mode            string   `yaml:"mode"` // stay (default), auto-finish, auto-rollback
	AutoFinishAfter Duration `yaml:"auto_finish_after"`
	Expiry          Duration `yaml:"expiry"`
	RemindAfter     Duration `yaml:"remind_after"`
}

// DeployNotify lists the channels; each is optional.
type DeployNotify struct {
	SlackURL   string       `yaml:"slack_url"`
	WebhookURL string       `yaml:"webhook_url"`
	Email      *DeployEmail `yaml:"email"`
}

// DeployEmail is an SMTP destination.
type DeployEmail struct {
	Addr     string   `yaml:"addr"`
	From     string   `yaml:"from"`
	To       []string `yaml:"to"`
	Username string   `yaml:"username"`
	Password Secret   `yaml:"password"`
}

// deployCron is the window cron syntax: five fields, minute first (as
// pipeline.Windows parses it).
var deployCron = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// validateDeploys checks the deploys section so that a mistake names its
// file:line; internal/deploys.Compile checks the same again when it builds
// the policies.
func (c *Config) validateDeploys(at func(msg string, path ...string) error) error {
	d := c.Deploys
	if err := d.LinkKey.check(); err != nil {
		return at(err.Error(), "deploys", "link_key")
	}
	for _, env := range sortedKeys(d.Environments) {
		p := d.Environments[env]
		where := []string{"deploys", "environments", env}
		if err := d.validatePolicy(at, p, where); err != nil {
			return err
		}
		for _, app := range sortedKeys(p.Apps) {
			ap := p.Apps[app]
			if len(ap.Apps) > 0 {
				return at("apps do not nest", append(where, "apps", app, "apps")...)
			}
			if err := d.validatePolicy(at, ap, append(slices.Clone(where), "apps", app)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (d Deploys) validatePolicy(at func(msg string, path ...string) error, p DeployPolicy, where []string) error {
	key := func(k ...string) []string { return append(slices.Clone(where), k...) }
	if w := p.Windows; w != nil {
		if !w.Immediate && len(w.Allow) == 0 {
			return at("set immediate: true or at least one allow window", key("windows")...)
		}
		if w.Jitter < 0 {
			return at("must not be negative", key("windows", "jitter")...)
		}
		for i, a := range w.Allow {
			if err := validateWindow(at, a, key("windows", "allow", strconv.Itoa(i))); err != nil {
				return err
			}
		}
		for i, f := range w.Deny {
			k := key("windows", "deny", strconv.Itoa(i))
			if f.Cron != "" {
				if err := validateWindow(at, f, k); err != nil {
					return err
				}
				continue
			}
			loc := time.UTC
			if f.Zone != "" {
				l, err := time.LoadLocation(f.Zone)
				if err != nil {
					return at(fmt.Sprintf("unknown time zone %q", f.Zone), append(k, "zone")...)
				}
				loc = l
			}
			from, err := parseDeployDate(f.From, loc)
			if err != nil {
				return at(err.Error(), append(slices.Clone(k), "from")...)
			}
			to, err := parseDeployDate(f.To, loc)
			if err != nil {
				return at(err.Error(), append(slices.Clone(k), "to")...)
			}
			if !to.After(from) {
				return at(fmt.Sprintf("%s is not after from %s", f.To, f.From), append(k, "to")...)
			}
		}
	}
	for _, g := range []struct {
		name string
		a    *DeployApproval
	}{{"approval", p.Approval}, {"finish", p.Finish}} {
		name, a := g.name, g.a
		if a == nil {
			continue
		}
		if a.Required < 0 {
			return at(fmt.Sprintf("must not be negative, got %d", a.Required), key(name, "required")...)
		}
		for i, g := range a.Groups {
			if _, ok := d.Groups[g]; !ok {
				return at(fmt.Sprintf("group %q is not in deploys.groups", g), key(name, "groups", strconv.Itoa(i))...)
			}
		}
	}
	if h := p.Hold; h != nil {
		switch h.Mode {
		case "", "stay", "auto-finish", "auto-rollback":
		default:
			return at(fmt.Sprintf("want stay, auto-finish or auto-rollback, got %q", h.Mode), key("hold", "mode")...)
		}
		if h.Mode == "auto-finish" && h.AutoFinishAfter <= 0 {
			return at("auto-finish needs a positive auto_finish_after", key("hold", "auto_finish_after")...)
		}
	}
	if n := p.Notify; n != nil && n.Email != nil {
		if err := n.Email.Password.check(); err != nil {
			return at(err.Error(), key("notify", "email", "password")...)
		}
		if n.Email.Addr == "" || len(n.Email.To) == 0 {
			return at("addr and to are required", key("notify", "email")...)
		}
	}
	return nil
}

func validateWindow(at func(msg string, path ...string) error, w DeployWindow, k []string) error {
	if _, err := deployCron.Parse(w.Cron); err != nil {
		return at(fmt.Sprintf("%q: %v (five fields, minute first)", w.Cron, err), append(slices.Clone(k), "cron")...)
	}
	if w.Duration <= 0 {
		return at("must be positive, e.g. 2h", append(slices.Clone(k), "duration")...)
	}
	if w.Zone != "" {
		if _, err := time.LoadLocation(w.Zone); err != nil {
			return at(fmt.Sprintf("unknown time zone %q", w.Zone), append(slices.Clone(k), "zone")...)
		}
	}
	return nil
}

func parseDeployDate(s string, loc *time.Location) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	t, err := time.ParseInLocation("2006-01-02", s, loc)
	if err != nil {
		return t, fmt.Errorf("want RFC 3339 or YYYY-MM-DD, got %q", s)
	}
	return t, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
