package deployer

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// ConfigHash is the hash of the parts of s that shape the running
// container. Scale, Global, Upgrade, HealthCheck, PullAlways, Metadata, LB and
// Scheduling
// are left out: changing them must not recreate containers (as compose's
// ServiceHash drops deploy.replicas). Maps are hashed in key order by
// encoding/json, so the hash is stable.
func ConfigHash(s ServiceSpec) string {
	s.Scale = 0
	s.Global = false
	s.Upgrade = UpgradeStrategy{}
	s.HealthCheck = nil
	s.PullAlways = false
	s.Metadata = nil
	s.LB = nil
	s.Scheduling = nil // placement rules do not shape the container
	b, err := json.Marshal(s)
	if err != nil {
		// ServiceSpec holds only marshalable types; a failure here is a bug.
		panic("deployer: hash service: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
