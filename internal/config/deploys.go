package config

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
