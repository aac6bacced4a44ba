package deployer

// Labels on every container and network dockmaster owns. The program finds
// its containers by these, never by name: a container named like ours but
// without LabelEnv is foreign and is never touched.
const (
	labelPrefix     = "io.dockmaster."
	LabelEnv        = labelPrefix + "env"
	LabelStack      = labelPrefix + "stack"
	LabelService    = labelPrefix + "service"
	LabelVersion    = labelPrefix + "version"
	LabelDeployment = labelPrefix + "deployment"
	LabelConfigHash = labelPrefix + "config-hash"
	LabelIndex      = labelPrefix + "index"
)

// ownerLabels are the labels that scope a container to one service of one
// stack in one environment.
func ownerLabels(env, stack, service string) map[string]string {
	m := map[string]string{LabelEnv: env, LabelStack: stack}
	if service != "" {
		m[LabelService] = service
	}
	return m
}

// ownedBy reports whether labels put a container in env/stack(/service).
func ownedBy(labels map[string]string, env, stack, service string) bool {
	for k, v := range ownerLabels(env, stack, service) {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// ContainerName is the name people see: <stack>-<service>-<index>.
func ContainerName(stack, service string, index int) string {
	return stack + "-" + service + "-" + itoa(index)
}

// NetworkName is the bridge network of a stack: <env>_<stack>.
func NetworkName(env, stack string) string { return env + "_" + stack }
