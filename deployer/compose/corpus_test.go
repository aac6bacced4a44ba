package compose

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// sharedDir locates /work/shared (DOCKMASTER_SHARED, else ../shared beside
// the repository root).
func sharedDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("DOCKMASTER_SHARED")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared")
	}
	if _, err := os.Stat(filepath.Join(dir, "corpus")); err != nil {
		t.Skipf("shared corpus not found in %s (set DOCKMASTER_SHARED)", dir)
	}
	return dir
}

// corpusVars gives every variable of the files a value: the catalog
// question's default when present, else a dummy that suits most uses.
func corpusVars(t *testing.T, rancher []byte, files ...[]byte) map[string]string {
	vars := map[string]string{"VERSION": "1.0.0"}
	ref := regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)|\.Values\.([A-Za-z_][A-Za-z0-9_]*)`)
	for _, f := range append(files, rancher) {
		for _, m := range ref.FindAllStringSubmatch(string(f), -1) {
			name := m[1] + m[2]
			if _, ok := vars[name]; !ok {
				vars[name] = dummyValue(name)
			}
		}
	}
	var doc struct {
		Catalog struct {
			Questions []struct {
				Variable string `yaml:"variable"`
				Default  any    `yaml:"default"`
			} `yaml:"questions"`
		} `yaml:".catalog"`
	}
	if rancher != nil && yaml.Unmarshal(normalize(rancher), &doc) == nil {
		for _, q := range doc.Catalog.Questions {
			if q.Default != nil {
				vars[q.Variable] = fmt.Sprint(q.Default)
			}
		}
	}
	return vars
}

var numericName = regexp.MustCompile(`(?i)port|scale|count|size|num|timeout|interval|period|replicas|limit|memory|cpu|retention|disks|nodes|slaves|workers`)

// dummyValue guesses a value of the right shape from the variable's name.
func dummyValue(name string) string {
	if numericName.MatchString(name) {
		return "1"
	}
	return "dummy"
}

type corpusTally struct {
	ok, total int
	failures  map[string][]string // reason -> cases
}

func (c *corpusTally) load(t *testing.T, name string, opts Options) {
	t.Helper()
	c.total++
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("%s: panic: %v", name, r)
			}
		}()
		_, err := Load(context.Background(), opts)
		if err == nil {
			c.ok++
			return
		}
		reason := err.Error()
		var e *Error
		if errors.As(err, &e) {
			reason = e.Err.Error()
		}
		reason = regexp.MustCompile(`"[^"]*"|\d+`).ReplaceAllString(reason, "…")
		if len(reason) > 110 {
			reason = reason[:110]
		}
		c.failures[reason] = append(c.failures[reason], name)
	}()
}

func (c *corpusTally) report(t *testing.T, what string, floor float64) {
	t.Helper()
	pct := 100 * float64(c.ok) / float64(max(c.total, 1))
	t.Logf("%s: %d of %d parse (%.1f%%)", what, c.ok, c.total, pct)
	reasons := make([]string, 0, len(c.failures))
	for r := range c.failures {
		reasons = append(reasons, r)
	}
	sort.Slice(reasons, func(i, j int) bool { return len(c.failures[reasons[i]]) > len(c.failures[reasons[j]]) })
	for _, r := range reasons {
		cases := c.failures[r]
		t.Logf("  %3d × %s (e.g. %s)", len(cases), r, cases[0])
	}
	if pct < floor {
		t.Errorf("%s: %.1f%% parse, below the floor of %.0f%%", what, pct, floor)
	}
}

func TestCorpusRancherCatalog(t *testing.T) {
	dir := filepath.Join(sharedDir(t), "corpus", "rancher-catalog")
	f, err := os.Open(filepath.Join(dir, "MANIFEST.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type version struct{ compose, rancher string }
	versions := map[string]*version{}
	sc := bufio.NewScanner(f)
	var col map[string]int
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "\t")
		if col == nil {
			col = map[string]int{}
			for i, h := range fields {
				col[h] = i
			}
			continue
		}
		get := func(h string) string { return fields[col[h]] }
		vdir := filepath.Join(dir, get("catalog"), get("template"), get("version"))
		v := versions[vdir]
		if v == nil {
			v = &version{}
			versions[vdir] = v
		}
		switch file := filepath.Join(vdir, get("file")); get("file") {
		case "docker-compose.yml", "docker-compose.yml.tpl":
			v.compose = file
		case "rancher-compose.yml":
			v.rancher = file
		}
	}
	if len(versions) == 0 {
		t.Fatal("MANIFEST.tsv lists no files")
	}
	keys := make([]string, 0, len(versions))
	for k := range versions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	tally := &corpusTally{failures: map[string][]string{}}
	for _, k := range keys {
		v := versions[k]
		if v.compose == "" {
			continue
		}
		compose, err := os.ReadFile(v.compose)
		if err != nil {
			t.Fatal(err)
		}
		var rancher []byte
		if v.rancher != "" {
			if rancher, err = os.ReadFile(v.rancher); err != nil {
				t.Fatal(err)
			}
		}
		rel, _ := filepath.Rel(dir, k)
		tally.load(t, rel, Options{
			StackName: "corpus", ComposeFile: v.compose, ComposeBytes: compose,
			RancherFile: v.rancher, RancherBytes: rancher,
			Variables: corpusVars(t, rancher, compose),
		})
	}
	tally.report(t, "rancher catalog", 98.7) // 395 of 400; the other 5 are minio templates Go rejects
}

func TestCorpusCompose(t *testing.T) {
	dir := filepath.Join(sharedDir(t), "corpus", "compose")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	tally := &corpusTally{failures: map[string][]string{}}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		for _, name := range []string{"compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml"} {
			path := filepath.Join(dir, e.Name(), name)
			b, err := os.ReadFile(path)
			if err != nil {
				continue
			}
			tally.load(t, e.Name(), Options{
				StackName: "corpus", ComposeFile: path, ComposeBytes: b,
				Variables: corpusVars(t, nil, b),
			})
		}
	}
	if tally.total == 0 {
		t.Fatal("no compose files found")
	}
	tally.report(t, "compose", 97) // 50 of 51; the other needs a boolean the dummy lacks
}
