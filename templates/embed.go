// Package templates holds dockmaster's HTML pages and text templates,
// embedded into the binary.
//
// Every page is a file "<name>.html" that defines the blocks "title" and
// "content" and is rendered inside layout.html. Pages work without
// JavaScript; /static/ holds the stylesheet and small enhancements
// (the CSP allows only same-origin scripts and styles).
package templates

import (
	"embed"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"sync"
	"time"
)

//go:embed *.html static
var files embed.FS

// Static is the /static/ file tree.
func Static() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embed pattern guarantees the folder
	}
	return sub
}

// Funcs are available to every page.
var Funcs = template.FuncMap{
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		d := time.Since(t).Round(time.Second)
		switch {
		case d < time.Minute:
			return fmt.Sprintf("%ds ago", int(d.Seconds()))
		case d < time.Hour:
			return fmt.Sprintf("%dm ago", int(d.Minutes()))
		case d < 48*time.Hour:
			return fmt.Sprintf("%dh ago", int(d.Hours()))
		}
		return fmt.Sprintf("%dd ago", int(d.Hours()/24))
	},
	"when": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
}

// Pages parses each page once, with the layout.
type Pages struct {
	mu    sync.Mutex
	cache map[string]*template.Template
}

// NewPages returns an empty page cache.
func NewPages() *Pages { return &Pages{cache: map[string]*template.Template{}} }

// Render writes page name (without .html) with data, inside the layout.
func (p *Pages) Render(w io.Writer, name string, data any) error {
	t, err := p.page(name)
	if err != nil {
		return err
	}
	return t.ExecuteTemplate(w, "layout", data)
}

func (p *Pages) page(name string) (*template.Template, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.cache[name]; ok {
		return t, nil
	}
	t, err := template.New(name).Funcs(Funcs).ParseFS(files, "layout.html", name+".html")
	if err != nil {
		return nil, fmt.Errorf("templates: %s: %w", name, err)
	}
	p.cache[name] = t
	return t, nil
}
