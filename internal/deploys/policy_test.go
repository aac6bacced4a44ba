package deploys

import (
	"strings"
	"testing"
	"time"

	"github.com/dockmaster/dockmaster/internal/config"
	"github.com/dockmaster/dockmaster/pipeline"
)

func TestCompilePolicies(t *testing.T) {
	yes := true
	c := config.Deploys{Groups: map[string][]string{"ops": {"alice"}}, Environments: map[string]config.DeployPolicy{
		"prod": {
			Windows: &config.DeployWindows{Allow: []config.DeployWindow{{Cron: "0 2 * * 1-5", Duration: config.Duration(2 * time.Hour), Zone: "Europe/Berlin"}},
				Deny: []config.DeployWindow{{From: "2025-12-24", To: "2025-12-27", Reason: "holidays"}}},
			Finish: &config.DeployApproval{Required: 2, Groups: []string{"ops"}},
			Apps:   map[string]config.DeployPolicy{"web": {Windows: &config.DeployWindows{Immediate: true}, LinkOnly: &yes}},
		},
	}}
	p, err := Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	prod, _ := p.For("api", "prod")
	if _, open := prod.Windows.OpenAt(time.Date(2025, 12, 24, 1, 30, 0, 0, time.UTC)); open {
		t.Error("open during the holiday freeze")
	}
	if prod.Finish.Required != 2 || prod.LinkOnly {
		t.Errorf("prod = %+v", prod)
	}
	web, _ := p.For("web", "prod")
	if _, open := web.Windows.OpenAt(time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)); !open || !web.LinkOnly || web.Finish.Required != 2 {
		t.Errorf("web override = %+v", web)
	}
	if dev, _ := p.For("web", "dev"); dev.Windows == nil || !dev.Promote || dev.Hold != pipeline.HoldMode("") {
		t.Errorf("default = %+v", dev)
	}
	bad := config.Deploys{Environments: map[string]config.DeployPolicy{"prod": {Windows: &config.DeployWindows{Allow: []config.DeployWindow{{Cron: "0 2 * *", Duration: config.Duration(time.Hour)}}}}}}
	if _, err := Compile(bad); err == nil || !strings.Contains(err.Error(), "deploys.environments.prod.windows.allow[0].cron") {
		t.Errorf("err = %v", err)
	}
	bad = config.Deploys{Environments: map[string]config.DeployPolicy{"prod": {Finish: &config.DeployApproval{Required: 1, Groups: []string{"nobody"}}}}}
	if _, err := Compile(bad); err == nil || !strings.Contains(err.Error(), `group "nobody"`) {
		t.Errorf("err = %v", err)
	}
}
