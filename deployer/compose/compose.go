// Package compose reads a docker-compose.yml and an optional
// rancher-compose.yml into the deployer's StackSpec.
//
// Input goes through the steps Rancher 1.6 applied, in order: CRLF and BOM
// removal, the catalog template (text/template, when the file holds "{{"
// and does not start with "# notemplating"), YAML parsing with duplicate
// keys resolved last-wins (with a warning), variable checks with lines, then
// compose-go for the compose file (all formats: v1, v2, v3, specification)
// and a yaml.v3 node walk for rancher-compose.
package compose

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/loader"
	ctemplate "github.com/compose-spec/compose-go/v2/template"
	"github.com/compose-spec/compose-go/v2/types"
	"gopkg.in/yaml.v3"

	"github.com/dockmaster/dockmaster/deployer"
)

// Options name the files of one stack and the deploy parameters.
type Options struct {
	StackName string
	// ComposeFile names the compose file in messages; it is read when
	// ComposeBytes is nil. Relative env_file paths are resolved from its
	// directory.
	ComposeFile  string
	ComposeBytes []byte
	// RancherFile and RancherBytes are optional; with both empty there is
	// no rancher-compose.yml.
	RancherFile  string
	RancherBytes []byte
	// Variables are the deploy parameters (VERSION etc.), the only
	// environment interpolation sees: the process environment is not used.
	Variables map[string]string
}

// Load reads the stack's files into a StackSpec. Bad input yields an *Error
// naming the file and, when known, the line; non-fatal findings are in
// StackSpec.Warnings.
func Load(ctx context.Context, opts Options) (*deployer.StackSpec, error) {
	var warnings []string
	vars := opts.Variables
	if vars == nil {
		vars = map[string]string{}
	}
	name := opts.ComposeFile
	if name == "" {
		name = "docker-compose.yml"
	}
	content := opts.ComposeBytes
	if content == nil {
		if opts.ComposeFile == "" {
			return nil, errors.New("compose: no compose file given")
		}
		b, err := os.ReadFile(opts.ComposeFile)
		if err != nil {
			return nil, fmt.Errorf("compose: %w", err)
		}
		content = b
	}
	src := &source{name: name, vars: vars, stack: opts.StackName, warnings: &warnings}
	project, err := src.loadCompose(ctx, content, filepath.Dir(opts.ComposeFile))
	if err != nil {
		return nil, err
	}
	spec := &deployer.StackSpec{Name: opts.StackName}
	names := make([]string, 0, len(project.Services))
	for n := range project.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		svc, err := src.convertService(project.Services[n], filepath.Dir(opts.ComposeFile))
		if err != nil {
			return nil, err
		}
		spec.Services = append(spec.Services, svc)
	}

	if opts.RancherBytes != nil || opts.RancherFile != "" {
		rcontent := opts.RancherBytes
		rname := opts.RancherFile
		if rname == "" {
			rname = "rancher-compose.yml"
		}
		if rcontent == nil {
			b, err := os.ReadFile(opts.RancherFile)
			if err != nil {
				return nil, fmt.Errorf("compose: %w", err)
			}
			rcontent = b
		}
		rsrc := &source{name: rname, vars: vars, stack: opts.StackName, warnings: &warnings}
		if err := rsrc.applyRancher(rcontent, spec); err != nil {
			return nil, err
		}
	}
	spec.Warnings = warnings
	return spec, nil
}

// loadCompose prepares the compose file and hands it to compose-go.
func (s *source) loadCompose(ctx context.Context, content []byte, dir string) (*types.Project, error) {
	b, err := s.render(normalize(content))
	if err != nil {
		return nil, err
	}
	root, err := s.parse(b)
	if err != nil {
		return nil, err
	}
	if root == nil {
		return nil, &Error{File: s.name, Err: errors.New("the file is empty")}
	}
	if err := s.checkVariables(root, false); err != nil {
		return nil, err
	}
	s.toSpecFormat(root)
	s.root = root
	if svcs, _ := mapGet(root, "services"); svcs == nil || len(svcs.Content) == 0 {
		return nil, &Error{File: s.name, Err: errors.New("no services defined")}
	}
	cleaned, err := yaml.Marshal(root)
	if err != nil {
		return nil, &Error{File: s.name, Err: fmt.Errorf("re-encoding: %w", err)}
	}
	details := types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: s.name, Content: cleaned}},
		Environment: types.Mapping(s.vars),
	}
	project, err := loader.LoadWithContext(ctx, details, func(o *loader.Options) {
		o.SetProjectName("stack", true) // the name is ours; compose-go's rules on it do not apply
		o.ResolvePaths = false
		o.SkipConsistencyCheck = true // v1 files use undeclared volumes and cross-stack links
		o.SkipResolveEnvironment = true
		o.SkipResolveLabels = true
		o.Interpolate.Substitute = func(v string, m ctemplate.Mapping) (string, error) {
			return ctemplate.SubstituteWithOptions(v, m, ctemplate.WithoutLogging)
		}
	})
	if err != nil {
		// compose-go names the file itself; ours says it already.
		if inner := errors.Unwrap(err); inner != nil && strings.HasPrefix(err.Error(), "validating "+s.name+": ") {
			err = inner
		}
		return nil, &Error{File: s.name, Line: s.lineOf(err), Err: err}
	}
	return project, nil
}

// lineOf finds the line of the services.<name>.<key> path that compose-go's
// error message names, or 0.
func (s *source) lineOf(err error) int {
	msg := err.Error()
	i := strings.Index(msg, "services.")
	if i < 0 {
		return 0
	}
	path := strings.Fields(msg[i:])[0]
	return s.lineAt(strings.TrimRight(path, ":,"))
}

// lineAt returns the line of a dotted path ("services.web.ports.1") in the
// cleaned compose tree, or of its deepest existing prefix.
func (s *source) lineAt(path string) int {
	n, line := s.root, 0
	for _, part := range strings.Split(path, ".") {
		n = resolveAlias(n)
		switch {
		case n == nil:
			return line
		case n.Kind == yaml.MappingNode:
			v, k := mapGet(n, part)
			if v == nil {
				return line
			}
			n, line = v, k.Line
		case n.Kind == yaml.SequenceNode:
			idx, err := strconv.Atoi(part)
			if err != nil || idx < 0 || idx >= len(n.Content) {
				return line
			}
			n = n.Content[idx]
			line = n.Line
		default:
			return line
		}
	}
	return line
}

// envFromFiles reads env_file entries that exist; a missing one is a
// warning, not an error, because the compose file may travel without them.
func (s *source) envFromFiles(svc types.ServiceConfig, dir string) map[string]string {
	env := map[string]string{}
	for _, f := range svc.EnvFiles {
		p := f.Path
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			if bool(f.Required) {
				s.warnf(0, "service %s: env_file %s not read: %v", svc.Name, f.Path, err)
			}
			continue
		}
		vals, err := dotenv.UnmarshalBytesWithLookup(b, func(k string) (string, bool) {
			v, ok := s.vars[k]
			return v, ok
		})
		if err != nil {
			s.warnf(0, "service %s: env_file %s: %v", svc.Name, f.Path, err)
			continue
		}
		for k, v := range vals {
			env[k] = v
		}
	}
	return env
}
