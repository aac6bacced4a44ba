package config

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// Secret is a value that must never be printed. In YAML it is a plain
// string, or {env: NAME} to read an environment variable, or
// {secret_file: PATH} (alias file:) to read a file (trailing newline cut).
type Secret struct {
	literal string
	env     string
	file    string
}

// NewSecret wraps a literal value.
func NewSecret(v string) Secret { return Secret{literal: v} }

// UnmarshalYAML accepts the three forms.
func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*s = Secret{literal: n.Value}
		return nil
	case yaml.MappingNode:
		var m struct {
			Env        string `yaml:"env"`
			File       string `yaml:"file"`
			SecretFile string `yaml:"secret_file"`
		}
		dec := n
		if err := dec.Decode(&m); err != nil {
			return err
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			switch k := n.Content[i].Value; k {
			case "env", "file", "secret_file":
			default:
				return fmt.Errorf("line %d: field %s not found in type secret (want env, secret_file)", n.Content[i].Line, k)
			}
		}
		if m.File == "" {
			m.File = m.SecretFile
		}
		*s = Secret{env: m.Env, file: m.File}
		return nil
	}
	return fmt.Errorf("line %d: a secret is a string, {env: NAME} or {secret_file: PATH}", n.Line)
}

// MarshalYAML never reveals the value.
func (s Secret) MarshalYAML() (any, error) {
	switch {
	case s.env != "":
		return map[string]string{"env": s.env}, nil
	case s.file != "":
		return map[string]string{"secret_file": s.file}, nil
	case s.literal != "":
		return "[redacted]", nil
	}
	return "", nil
}

// String never reveals the value either (fmt, slog).
func (s Secret) String() string {
	if s.IsZero() {
		return ""
	}
	return "[redacted]"
}

// IsZero reports whether no secret is set.
func (s Secret) IsZero() bool { return s.literal == "" && s.env == "" && s.file == "" }

// Value resolves the secret. Errors name the variable or file, not the value.
func (s Secret) Value() (string, error) {
	switch {
	case s.env != "":
		v, ok := os.LookupEnv(s.env)
		if !ok || v == "" {
			return "", fmt.Errorf("environment variable %s is not set", s.env)
		}
		return v, nil
	case s.file != "":
		b, err := os.ReadFile(s.file)
		if err != nil {
			return "", fmt.Errorf("secret file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return s.literal, nil
}

func (s Secret) check() error {
	if s.env != "" && s.file != "" {
		return errors.New("set env or secret_file, not both")
	}
	_, err := s.Value()
	return err
}
