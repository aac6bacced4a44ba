// Package traefiktest validates Traefik dynamic configuration JSON against
// the schema subset dockmaster emits (see README.md for its source), for
// the discovery package's tests and the end-to-end tests.
package traefiktest

import (
	"bytes"
	_ "embed"
	"fmt"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

//go:embed traefik-v2-dynamic-subset.schema.json
var schemaJSON []byte

var compiled = sync.OnceValues(func() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemaJSON))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("traefik.json", doc); err != nil {
		return nil, err
	}
	return c.Compile("traefik.json")
})

// Validate reports why b is not a valid Traefik v2 dynamic configuration
// (of the parts dockmaster emits), or nil.
func Validate(b []byte) error {
	s, err := compiled()
	if err != nil {
		return fmt.Errorf("traefik schema: %w", err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("traefik JSON: %w", err)
	}
	return s.Validate(inst)
}
