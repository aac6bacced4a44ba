package fleet_test

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/internal/fleet"
	"github.com/dockmaster/dockmaster/internal/seal"
	"github.com/dockmaster/dockmaster/internal/seal/sealtest"
	"github.com/dockmaster/dockmaster/internal/store"
	"github.com/dockmaster/dockmaster/internal/store/storetest"
)

// fakeTLSDocker answers the calls List makes (/_ping, /containers/json)
// (no containers), only to clients presenting a certificate of pki's CA.
func fakeTLSDocker(t *testing.T, pki sealtest.PKI) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		switch {
		case r.URL.Path == "/_ping":
			w.Write([]byte("OK"))
		case strings.HasSuffix(r.URL.Path, "/containers/json"):
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`[]`))
		default:
			http.NotFound(w, r)
		}
	}))
	srv.TLS = pki.Server
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return "tcp://" + srv.Listener.Addr().String()
}

// TestSealedTLSReachesTheClient registers a host with sealed TLS material
// and checks that the fleet's engine for it talks TLS with the client
// certificate, and that new certificates rebuild the deployer.
func TestSealedTLSReachesTheClient(t *testing.T) {
	ctx := context.Background()
	db := storetest.Open(t)
	if err := db.UpsertEnvironment(ctx, store.Environment{Name: "prod"}); err != nil {
		t.Fatal(err)
	}
	sealer, err := seal.FromSecret([]byte(strings.Repeat("s", 32)), "host-tls")
	if err != nil {
		t.Fatal(err)
	}
	pki := sealtest.New(t)
	endpoint := fakeTLSDocker(t, pki)
	register := func(m seal.TLSMaterial) {
		t.Helper()
		sealed, err := sealer.SealTLS(m, seal.HostOwner("prod", endpoint))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.RegisterHost(ctx, store.Host{Environment: "prod", Name: "h1", Endpoint: endpoint}, sealed,
			func([]byte) bool { return false }); err != nil {
			t.Fatal(err)
		}
	}
	register(pki.Client)

	var mu sync.Mutex
	var built []deployer.Engine
	var configs []*tls.Config
	f := fleet.New(fleet.Options{Store: db, TLS: fleet.SealedTLS(db, sealer),
		EngineFor: func(h store.Host, cfg *tls.Config) (deployer.Engine, error) {
			e, err := fleet.DockerEngine(h, cfg)
			mu.Lock()
			built, configs = append(built, e), append(configs, cfg)
			mu.Unlock()
			return e, err
		}})
	t.Cleanup(f.Close)
	d1, err := f.Deployer(ctx, "prod")
	if err != nil {
		t.Fatal(err)
	}
	if len(built) != 1 || configs[0] == nil || len(configs[0].Certificates) != 1 {
		t.Fatalf("engine built with TLS %v", configs)
	}
	if cs, err := built[0].List(ctx, nil); err != nil || len(cs) != 0 {
		t.Fatalf("List over TLS: %+v %v", cs, err)
	}
	if d, _ := f.Deployer(ctx, "prod"); d != d1 || len(built) != 1 {
		t.Fatal("unchanged hosts rebuilt the deployer")
	}

	// New certificates (of another CA): a new client, which the server refuses.
	register(sealtest.New(t).Client)
	if d, err := f.Deployer(ctx, "prod"); err != nil || d == d1 || len(built) != 2 {
		t.Fatalf("new certificates: rebuilt %v (%d engines), %v", d != d1, len(built), err)
	}
	if _, err := built[1].List(ctx, nil); err == nil {
		t.Fatal("the server accepted a certificate of another CA; the test proves nothing")
	}

	// Material sealed for another host does not open here.
	sealed, _ := sealer.SealTLS(pki.Client, seal.HostOwner("prod", "tcp://elsewhere:2376"))
	if _, err := db.Exec(`UPDATE hosts SET tls_sealed = ?`, sealed); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Deployer(ctx, "prod"); err == nil || !strings.Contains(err.Error(), "h1 TLS material") {
		t.Fatalf("swapped material: %v", err)
	}
}
