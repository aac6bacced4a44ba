package inventory

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dockmaster/dockmaster/internal/seal/sealtest"
	"github.com/dockmaster/dockmaster/internal/store"
	"github.com/dockmaster/dockmaster/internal/store/storetest"
)

// A host registered with client TLS is pinged with its certificate: it is
// active only when the TLS configuration is given.
func TestPingUsesTheHostsTLS(t *testing.T) {
	pki := sealtest.New(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		switch {
		case r.URL.Path == "/_ping":
			w.Write([]byte("OK"))
		case strings.HasSuffix(r.URL.Path, "/info"):
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"ServerVersion":"20.10.24","NCPU":4,"MemTotal":1024}`))
		default:
			http.NotFound(w, r)
		}
	}))
	srv.TLS = pki.Server
	srv.StartTLS()
	t.Cleanup(srv.Close)

	ctx := context.Background()
	db := storetest.Open(t)
	if err := db.UpsertEnvironment(ctx, store.Environment{Name: "prod"}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.UpsertHost(ctx, store.Host{Environment: "prod", Name: "h1", Endpoint: "tcp://" + srv.Listener.Addr().String()}); err != nil {
		t.Fatal(err)
	}
	cfg, err := pki.Client.Config("")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	for _, c := range []struct {
		name   string
		tlsFor TLSFor
		want   string
	}{
		{"without TLS", nil, "unreachable"},
		{"with the host's TLS", func(context.Context, store.Host) (*tls.Config, error) { return cfg, nil }, "active"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := New(db, log, time.Hour, c.tlsFor)
			m.Refresh(ctx)
			st := m.Status("prod")
			if len(st) != 1 || st[0].State != c.want {
				t.Fatalf("status %+v, want %s", st, c.want)
			}
			if c.want == "active" && st[0].NCPU != 4 {
				t.Fatalf("NCPU %d, want 4 from docker info", st[0].NCPU)
			}
			m.close()
		})
	}
}
