package deploys

import (
	"fmt"
	"time"

	"github.com/dockmaster/dockmaster/internal/config"
	"github.com/dockmaster/dockmaster/pipeline"
	"github.com/dockmaster/dockmaster/pipeline/notify"
)

// Policies are the compiled per-environment (and per-app) policies.
type Policies struct {
	env  map[string]*pipeline.EnvPolicy
	app  map[string]*pipeline.EnvPolicy // env + "/" + app
	jobs map[string]string              // env -> jenkins job
	def  *pipeline.EnvPolicy
}

// Compile checks c and compiles every policy. Errors name the key, e.g.
// deploys.environments.prod.windows.allow[0].cron.
func Compile(c config.Deploys) (*Policies, error) {
	imm, _ := pipeline.WindowPolicy{Immediate: true}.Compile()
	p := &Policies{env: map[string]*pipeline.EnvPolicy{}, app: map[string]*pipeline.EnvPolicy{}, jobs: map[string]string{},
		def: &pipeline.EnvPolicy{Windows: imm, Promote: true, LinkTTL: time.Duration(c.LinkTTL)}}
	for env, dp := range c.Environments {
		where := "deploys.environments." + env
		ep, err := compilePolicy(c, dp, config.DeployPolicy{}, where)
		if err != nil {
			return nil, err
		}
		p.env[env] = ep
		if dp.Jenkins != "" {
			p.jobs[env] = dp.Jenkins
		}
		for app, ap := range dp.Apps {
			aep, err := compilePolicy(c, ap, dp, where+".apps."+app)
			if err != nil {
				return nil, err
			}
			p.app[env+"/"+app] = aep
		}
	}
	return p, nil
}

// For returns the policy of app on env.
func (p *Policies) For(app, env string) (*pipeline.EnvPolicy, error) {
	if ep := p.app[env+"/"+app]; ep != nil {
		return ep, nil
	}
	if ep := p.env[env]; ep != nil {
		return ep, nil
	}
	return p.def, nil
}

// JenkinsJob is the deploy job of env, "" for the built-in deployer.
func (p *Policies) JenkinsJob(env string) string { return p.jobs[env] }

func compilePolicy(c config.Deploys, dp, base config.DeployPolicy, where string) (*pipeline.EnvPolicy, error) {
	pick := func(a, b *config.DeployApproval) *config.DeployApproval {
		if a != nil {
			return a
		}
		return b
	}
	ep := &pipeline.EnvPolicy{LinkTTL: time.Duration(c.LinkTTL), Promote: true}
	w := dp.Windows
	if w == nil {
		w = base.Windows
	}
	wp := pipeline.WindowPolicy{Immediate: true}
	if w != nil {
		wp = pipeline.WindowPolicy{Immediate: w.Immediate, Jitter: time.Duration(w.Jitter)}
		for _, a := range w.Allow {
			wp.Allow = append(wp.Allow, pipeline.WindowSpec{Cron: a.Cron, Duration: time.Duration(a.Duration), Zone: a.Zone})
		}
		for i, d := range w.Deny {
			fs := pipeline.FreezeSpec{WindowSpec: pipeline.WindowSpec{Cron: d.Cron, Duration: time.Duration(d.Duration), Zone: d.Zone}, Reason: d.Reason}
			if d.Cron == "" {
				loc := time.UTC
				if d.Zone != "" {
					l, err := time.LoadLocation(d.Zone)
					if err != nil {
						return nil, fmt.Errorf("%s.windows.deny[%d].zone: %w", where, i, err)
					}
					loc = l
				}
				var err error
				if fs.From, err = parseDate(d.From, loc); err != nil {
					return nil, fmt.Errorf("%s.windows.deny[%d].from: %w", where, i, err)
				}
				if fs.To, err = parseDate(d.To, loc); err != nil {
					return nil, fmt.Errorf("%s.windows.deny[%d].to: %w", where, i, err)
				}
			}
			wp.Deny = append(wp.Deny, fs)
		}
	}
	var err error
	if ep.Windows, err = wp.Compile(); err != nil {
		return nil, fmt.Errorf("%s.%w", where, err)
	}
	approval := func(a *config.DeployApproval, key string) (pipeline.ApprovalPolicy, error) {
		if a == nil {
			return pipeline.ApprovalPolicy{}, nil
		}
		for _, g := range a.Groups {
			if _, ok := c.Groups[g]; !ok {
				return pipeline.ApprovalPolicy{}, fmt.Errorf("%s.%s.groups: group %q is not in deploys.groups", where, key, g)
			}
		}
		if a.Required < 0 {
			return pipeline.ApprovalPolicy{}, fmt.Errorf("%s.%s.required: must not be negative", where, key)
		}
		return pipeline.ApprovalPolicy{Required: a.Required, Groups: a.Groups, Members: c.Groups, ForbidSelf: a.ForbidSelf,
			Deadline: time.Duration(a.Deadline)}, nil
	}
	if ep.Approval, err = approval(pick(dp.Approval, base.Approval), "approval"); err != nil {
		return nil, err
	}
	if ep.Finish, err = approval(pick(dp.Finish, base.Finish), "finish"); err != nil {
		return nil, err
	}
	hold := dp.Hold
	if hold == nil {
		hold = base.Hold
	}
	if hold != nil {
		switch pipeline.HoldMode(hold.Mode) {
		case "", pipeline.HoldStay, pipeline.HoldAutoFinish, pipeline.HoldAutoRollback:
			ep.Hold = pipeline.HoldMode(hold.Mode)
		default:
			return nil, fmt.Errorf("%s.hold.mode: want stay, auto-finish or auto-rollback, got %q", where, hold.Mode)
		}
		ep.AutoFinishAfter, ep.Expiry, ep.RemindAfter = time.Duration(hold.AutoFinishAfter), time.Duration(hold.Expiry), time.Duration(hold.RemindAfter)
	}
	n := dp.Notify
	if n == nil {
		n = base.Notify
	}
	if n != nil {
		ep.Channels = notify.Channels{SlackURL: n.SlackURL, WebhookURL: n.WebhookURL}
		if e := n.Email; e != nil {
			pw, err := e.Password.Value()
			if err != nil {
				return nil, fmt.Errorf("%s.notify.email.password: %w", where, err)
			}
			ep.Channels.Email = &notify.Email{Addr: e.Addr, From: e.From, To: e.To, Username: e.Username, Password: pw}
		}
	}
	for _, b := range []struct {
		v   *bool
		dst *bool
	}{{dp.LinkOnly, &ep.LinkOnly}, {dp.Promote, &ep.Promote}} {
		if b.v != nil {
			*b.dst = *b.v
		}
	}
	if dp.LinkOnly == nil && base.LinkOnly != nil {
		ep.LinkOnly = *base.LinkOnly
	}
	if dp.Promote == nil && base.Promote != nil {
		ep.Promote = *base.Promote
	}
	return ep, nil
}

func parseDate(s string, loc *time.Location) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	t, err := time.ParseInLocation("2006-01-02", s, loc)
	if err != nil {
		return t, fmt.Errorf("%q: want RFC 3339 or YYYY-MM-DD", s)
	}
	return t, nil
}
