package compose

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// FuzzLoad feeds arbitrary compose and rancher-compose bytes to Load: it
// must return a spec or an error, never panic, and a spec it returns keeps
// its invariants (services sorted, scale not negative).
func FuzzLoad(f *testing.F) {
	files, err := filepath.Glob("testdata/*")
	if err != nil {
		f.Fatal(err)
	}
	var ranchers [][]byte
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		if filepath.Base(name) == "rancher-full.yml" || filepath.Base(name) == "lb-rancher.yml" {
			ranchers = append(ranchers, b)
			continue
		}
		f.Add(b, []byte(nil))
	}
	for _, r := range ranchers {
		f.Add([]byte("web:\n  image: nginx\nlb:\n  image: lb\n"), r)
	}
	f.Fuzz(func(t *testing.T, compose, rancher []byte) {
		opts := Options{StackName: "fuzz", ComposeFile: "c.yml", ComposeBytes: compose, Variables: map[string]string{"VERSION": "1"}}
		if rancher != nil {
			opts.RancherFile, opts.RancherBytes = "r.yml", rancher
		}
		spec, err := Load(context.Background(), opts)
		if err != nil {
			return
		}
		if !sort.SliceIsSorted(spec.Services, func(i, j int) bool { return spec.Services[i].Name < spec.Services[j].Name }) {
			t.Errorf("services not sorted: %v", names(spec))
		}
		for _, s := range spec.Services {
			if s.Scale < 0 {
				t.Errorf("service %s: scale %d", s.Name, s.Scale)
			}
		}
	})
}
