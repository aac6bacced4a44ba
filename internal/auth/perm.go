// Package auth is dockmaster's access layer: local users with bcrypt
// passwords, API keys, roles per environment, server-side sessions with
// CSRF tokens, login throttling, security headers, the route-permission
// registry that every HTTP route must be declared in, and the audit helper.
package auth

import (
	"fmt"
	"sort"
)

// Permission is one thing a principal may do on an environment.
type Permission string

// The permissions. Routes declare exactly one.
const (
	// PermAuthenticated needs only a valid login or key (who-am-I, own keys, logout).
	PermAuthenticated Permission = "authenticated"
	// PermAccount needs a user: a login or an account key, not an
	// environment key (which belongs to no one). For one's own keys.
	PermAccount Permission = "account"
	// PermView sees apps, versions, tickets, hosts, audit entries.
	PermView Permission = "view"
	// PermViewSecrets sees containers' environment variables and secrets.
	PermViewSecrets Permission = "view-secrets"
	// PermDeploy starts deploys and changes apps and pipelines.
	PermDeploy Permission = "deploy"
	// PermApprove approves, confirms (finishes) and rolls back upgrades.
	PermApprove Permission = "approve"
	// PermContainerAct stops, starts and restarts containers.
	PermContainerAct Permission = "container-act"
	// PermExec opens a shell in a container.
	PermExec Permission = "exec"
	// PermManageHosts adds, drains and removes the environment's hosts.
	PermManageHosts Permission = "manage-hosts"
	// PermManageMembers grants roles and creates environment keys.
	PermManageMembers Permission = "manage-members"
	// PermAdmin is global: users, environments, everything.
	PermAdmin Permission = "admin"
)

// Role is what a user (or an environment key) is on one environment.
type Role string

// The roles, strongest first.
const (
	RoleOwner      Role = "owner"
	RoleMember     Role = "member"
	RoleReadOnly   Role = "read-only"
	RoleRestricted Role = "restricted"
)

// rolePerms is the one table of who may do what. Admins hold every
// permission on every environment and are not listed.
func rolePerms(r Role) []Permission {
	switch r {
	case RoleRestricted:
		return []Permission{PermView}
	case RoleReadOnly:
		return []Permission{PermView, PermViewSecrets}
	case RoleMember:
		return []Permission{PermView, PermViewSecrets, PermDeploy, PermApprove, PermContainerAct, PermExec}
	case RoleOwner:
		return []Permission{PermView, PermViewSecrets, PermDeploy, PermApprove, PermContainerAct, PermExec,
			PermManageHosts, PermManageMembers}
	}
	return nil
}

// Roles lists the valid roles, strongest first.
func Roles() []Role { return []Role{RoleOwner, RoleMember, RoleReadOnly, RoleRestricted} }

// ParseRole validates a role name.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles() {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("unknown role %q (want owner, member, read-only or restricted)", s)
}

// Principal is who a request acts as.
type Principal struct {
	// UserID is the user (0 for an environment key, which belongs to no one).
	UserID int64
	// Name is the actor written to the audit log: the user name, or
	// "key:<access key>" for an environment key.
	Name  string
	Admin bool
	// Roles maps environment to role.
	Roles map[string]Role
	// KeyEnv is set for an environment key: it acts on that environment only.
	KeyEnv string
	// AccessKey is the API key used, "" for a session.
	AccessKey string

	sessionHash []byte
	csrf        string
}

// ViaSession reports whether the principal logged in with a cookie (and so
// must send CSRF tokens).
func (p *Principal) ViaSession() bool { return p != nil && p.sessionHash != nil }

// ActorName is how the audit log and records name the principal:
// "anonymous" when there is none (no access layer in front).
func (p *Principal) ActorName() string {
	if p == nil {
		return "anonymous"
	}
	return p.Name
}

// Authorizer answers permission questions. It holds no state; it exists
// so that handlers receive it rather than calling a package function, and
// so that a future policy (e.g. link-only approval) has a home.
type Authorizer struct{}

// Can reports whether p holds perm on env. env "" asks "on any
// environment" (for lists, which the handler then filters per item with
// Can). A nil principal can do nothing.
func (a *Authorizer) Can(p *Principal, env string, perm Permission) bool {
	if p == nil {
		return false
	}
	if perm == PermAuthenticated {
		return true
	}
	if perm == PermAccount {
		return p.UserID != 0
	}
	if p.Admin && p.KeyEnv == "" {
		return true
	}
	if perm == PermAdmin {
		return false
	}
	if env == "" {
		for _, r := range p.Roles {
			if hasPerm(r, perm) {
				return true
			}
		}
		return false
	}
	if p.KeyEnv != "" && p.KeyEnv != env {
		return false
	}
	return hasPerm(p.Roles[env], perm)
}

// Environments lists the environments where p holds perm, sorted; nil
// means all (an admin).
func (a *Authorizer) Environments(p *Principal, perm Permission) []string {
	if p != nil && p.Admin && p.KeyEnv == "" {
		return nil
	}
	out := []string{}
	if p == nil {
		return out
	}
	for env, r := range p.Roles {
		if hasPerm(r, perm) {
			out = append(out, env)
		}
	}
	sort.Strings(out)
	return out
}

func hasPerm(r Role, perm Permission) bool {
	for _, p := range rolePerms(r) {
		if p == perm {
			return true
		}
	}
	return false
}
