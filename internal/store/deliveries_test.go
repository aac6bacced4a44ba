package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newDelivery(id string, actionable bool) NewDelivery {
	d := NewDelivery{Provider: "github", DeliveryID: id, EventName: "push", Repository: "team/app",
		Verdict: VerdictAccepted, Headers: http.Header{"X-Github-Delivery": {id}}, Body: []byte(`{"n":"` + id + `"}`),
		EventKind: "push", Event: json.RawMessage(`{"Kind":"push"}`), Actionable: actionable}
	if !actionable {
		d.Verdict, d.Reason, d.Repository = VerdictIgnored, "branch x deleted", "team/other"
	}
	return d
}

func count(t *testing.T, db *DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

type deliveryInserter interface {
	InsertDeliveries(context.Context, []NewDelivery) ([]InsertResult, error)
}

func TestInsertDeliveriesDeduplicates(t *testing.T) {
	t.Run("db", func(t *testing.T) {
		forEachStore(t, func(t *testing.T, db *DB) { testDeduplicates(t, db, db) })
	})
	t.Run("writer", func(t *testing.T) {
		forEachStore(t, func(t *testing.T, db *DB) {
			w := db.DeliveryWriter()
			defer w.Close()
			testDeduplicates(t, db, w)
		})
	})
}

func testDeduplicates(t *testing.T, db *DB, w deliveryInserter) {
	ctx := context.Background()
	// Two copies of "a" inside one batch, and a non-actionable one.
	res, err := w.InsertDeliveries(ctx, []NewDelivery{newDelivery("a", true), newDelivery("b", false), newDelivery("a", true)})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Duplicate || res[0].EventID == 0 || res[0].Verdict != VerdictAccepted {
		t.Errorf("first a: %+v, want new with an event", res[0])
	}
	if res[1].Duplicate || res[1].EventID != 0 || res[1].Verdict != VerdictIgnored {
		t.Errorf("b: %+v, want new, ignored, no event", res[1])
	}
	if !res[2].Duplicate || res[2].ID != res[0].ID || res[2].EventID != 0 {
		t.Errorf("second a: %+v, want duplicate of %d without event", res[2], res[0].ID)
	}
	// A copy in a later batch; same provider id under another provider is new.
	other := newDelivery("a", true)
	other.Provider = "gitlab"
	res, err = w.InsertDeliveries(ctx, []NewDelivery{newDelivery("a", true), other})
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Duplicate || res[1].Duplicate {
		t.Errorf("later batch: %+v", res)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM deliveries`); n != 3 {
		t.Errorf("%d deliveries stored, want 3", n)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM events`); n != 2 {
		t.Errorf("%d events, want 2 (github a, gitlab a)", n)
	}
	if n := count(t, db, `SELECT duplicates FROM deliveries WHERE provider='github' AND delivery_id='a'`); n != 2 {
		t.Errorf("duplicates of a = %d, want 2", n)
	}
}

func TestInsertDeliveriesAllOrNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := db.InsertDeliveries(ctx, []NewDelivery{newDelivery("a", true)}); err == nil {
			t.Fatal("want an error with a canceled context")
		}
		if n := count(t, db, `SELECT COUNT(*) FROM deliveries`); n != 0 {
			t.Errorf("%d stored after a failed batch", n)
		}
		// The writer rolls back a failed batch and stays usable.
		w := db.DeliveryWriter()
		defer w.Close()
		bad := newDelivery("b", true)
		bad.Event = nil // refused, after "a" was inserted in the same transaction
		if _, err := w.InsertDeliveries(context.Background(), []NewDelivery{newDelivery("a", true), bad}); err == nil {
			t.Fatal("want an error for an actionable delivery without its event")
		}
		if n := count(t, db, `SELECT COUNT(*) FROM deliveries`); n != 0 {
			t.Errorf("%d stored after a failed batch, want 0 (rolled back)", n)
		}
		if _, err := w.InsertDeliveries(context.Background(), []NewDelivery{newDelivery("a", true)}); err != nil {
			t.Fatalf("writer after a failed batch: %v", err)
		}
		if n := count(t, db, `SELECT COUNT(*) FROM deliveries`); n != 1 {
			t.Errorf("%d stored, want 1", n)
		}
	})
}

func TestDeliveriesListShowReplay(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		var batch []NewDelivery
		for _, id := range []string{"1", "2", "3", "4"} {
			batch = append(batch, newDelivery(id, id != "3"))
		}
		res, err := db.InsertDeliveries(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}

		all, err := db.Deliveries(ctx, DeliveryFilter{Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 2 || all[0].DeliveryID != "4" || all[1].DeliveryID != "3" {
			t.Fatalf("first page %+v, want 4, 3", all)
		}
		page2, err := db.Deliveries(ctx, DeliveryFilter{Limit: 2, Before: all[1].ID})
		if err != nil {
			t.Fatal(err)
		}
		if len(page2) != 2 || page2[0].DeliveryID != "2" || page2[1].DeliveryID != "1" {
			t.Fatalf("second page %+v, want 2, 1", page2)
		}
		ign, err := db.Deliveries(ctx, DeliveryFilter{Verdict: VerdictIgnored})
		if err != nil {
			t.Fatal(err)
		}
		if len(ign) != 1 || ign[0].DeliveryID != "3" || ign[0].Reason == "" || ign[0].Repository != "team/other" {
			t.Fatalf("ignored: %+v", ign)
		}
		if got, _ := db.Deliveries(ctx, DeliveryFilter{Repository: "team/app", Provider: "github"}); len(got) != 3 {
			t.Fatalf("team/app: %d deliveries, want 3", len(got))
		}
		if got, _ := db.Deliveries(ctx, DeliveryFilter{Provider: "gitlab"}); len(got) != 0 {
			t.Fatalf("gitlab: %+v", got)
		}

		d, err := db.Delivery(ctx, res[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		if string(d.Body) != `{"n":"1"}` || d.Headers.Get("X-GitHub-Delivery") != "1" || len(d.Events) != 1 || d.Events[0].Source != "hook" {
			t.Fatalf("show: %+v", d)
		}
		if d.ReceivedAt.IsZero() {
			t.Error("received_at not read")
		}

		ev, err := db.ReplayDelivery(ctx, res[0].ID, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if ev <= res[3].EventID {
			t.Errorf("replayed event %d, want after %d", ev, res[3].EventID)
		}
		d, _ = db.Delivery(ctx, res[0].ID)
		if d.Replays != 1 || len(d.Events) != 2 || d.Events[1].ID != ev || d.Events[1].Source != "replay" {
			t.Fatalf("after replay: %+v", d)
		}
		if n := count(t, db, `SELECT COUNT(*) FROM audit_log WHERE actor='alice' AND action='delivery.replay'`); n != 1 {
			t.Errorf("%d audit rows", n)
		}
		var payload string
		db.QueryRowContext(ctx, `SELECT payload FROM events WHERE id = ?`, ev).Scan(&payload)
		if payload != `{"Kind":"push"}` {
			t.Errorf("replayed payload %q", payload)
		}

		if _, err := db.ReplayDelivery(ctx, res[2].ID, "alice"); !errors.Is(err, ErrNotActionable) {
			t.Errorf("replay ignored: %v, want ErrNotActionable", err)
		}
		if _, err := db.ReplayDelivery(ctx, 999, "alice"); !errors.Is(err, ErrNotFound) {
			t.Errorf("replay missing: %v, want ErrNotFound", err)
		}
		if _, err := db.Delivery(ctx, 999); !errors.Is(err, ErrNotFound) {
			t.Errorf("show missing: %v, want ErrNotFound", err)
		}
	})
}

// BenchmarkInsertDeliveries reports the single writer's cost per delivery
// (µs/delivery) for a realistic GitHub push, by batch size.
func BenchmarkInsertDeliveries(b *testing.B) {
	body := []byte(strings.Repeat(`{"ref":"refs/heads/main","after":"0123456789abcdef0123456789abcdef01234567"}`, 9))
	event := json.RawMessage(`{"Kind":"push","Push":{"Repo":{"FullName":"bench/app","CloneURL":"https://git.example/bench/app.git","WebURL":"https://git.example/bench/app"},"Ref":"refs/heads/main","Branch":"main","Tag":"","Before":"0000000000000000000000000000000000000001","After":"0000000000000000000000000000000000000002","Created":false,"Deleted":false,"Forced":false,"Pusher":"bench","PusherEmail":"bench@example.com","HeadCommit":{"ID":"0000000000000000000000000000000000000002","Message":"change 1","AuthorName":"Bench","AuthorEmail":"bench@example.com","Timestamp":"2024-03-01T10:00:00Z"},"CommitCount":1},"More":null,"Build":null,"Images":null}`)
	headers := http.Header{"Content-Type": {"application/json"}, "X-Github-Event": {"push"}, "User-Agent": {"GitHub-Hookshot/abc"},
		"X-Hub-Signature-256": {"sha256=" + strings.Repeat("ab", 32)}, "X-Github-Hook-Id": {"4242"}}
	for _, size := range []int{1, 64} {
		for _, via := range []string{"db", "writer"} {
			b.Run(fmt.Sprintf("batch=%d/%s", size, via), func(b *testing.B) {
				db, err := Open(context.Background(), filepath.Join(b.TempDir(), "dm.db"))
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				var w deliveryInserter = db
				if via == "writer" {
					dw := db.DeliveryWriter()
					defer dw.Close()
					w = dw
				}
				n := 0
				b.ResetTimer()
				for range b.N {
					batch := make([]NewDelivery, size)
					for j := range batch {
						n++
						h := headers.Clone()
						h.Set("X-Github-Delivery", fmt.Sprintf("d-%08d", n))
						batch[j] = NewDelivery{Provider: "github", DeliveryID: fmt.Sprintf("d-%08d", n), EventName: "push", Repository: "bench/app",
							Verdict: VerdictAccepted, Headers: h, Body: body, EventKind: "push", Event: event, Actionable: true}
					}
					if _, err := w.InsertDeliveries(context.Background(), batch); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(n), "µs/delivery")
			})
		}
	}
}

// TestDeliveryWriterCheckpoints: the writer's own connection never
// checkpoints, so its background checkpointer must copy the WAL into the
// database file (else the WAL grows without bound).
func TestDeliveryWriterCheckpoints(t *testing.T) {
	db, path := openTemp(t)
	w := db.DeliveryWriter()
	body := []byte(strings.Repeat("x", 2000))
	for b := 0; b < int(checkpointDue+63)/64+1; b++ {
		batch := make([]NewDelivery, 64)
		for i := range batch {
			batch[i] = newDelivery(fmt.Sprintf("%d-%d", b, i), true)
			batch[i].Body = body
		}
		if _, err := w.InsertDeliveries(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil { // waits for the checkpointer
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if min := checkpointDue * int64(len(body)); st.Size() < min {
		t.Fatalf("database file is %d bytes after %d deliveries, want >= %d: nothing was checkpointed", st.Size(), checkpointDue, min)
	}
}

// setCheckpointPolicy sets the checkpointer's thresholds for one test
// (before any writer starts; restored after the test's writers closed).
func setCheckpointPolicy(t *testing.T, due, force int64, quiet time.Duration) {
	oldDue, oldForce, oldQuiet := checkpointDue, checkpointForce, checkpointQuiet
	checkpointDue, checkpointForce, checkpointQuiet = due, force, quiet
	t.Cleanup(func() { checkpointDue, checkpointForce, checkpointQuiet = oldDue, oldForce, oldQuiet })
}

// insertFor commits batches of four deliveries, one every 5ms, for d.
func insertFor(t *testing.T, w *DeliveryWriter, prefix string, d time.Duration) {
	t.Helper()
	for i, end := 0, time.Now().Add(d); time.Now().Before(end); i++ {
		batch := make([]NewDelivery, 4)
		for j := range batch {
			batch[j] = newDelivery(fmt.Sprintf("%s-%d-%d", prefix, i, j), true)
		}
		if _, err := w.InsertDeliveries(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fileSize is the database file's size: only a checkpoint grows it while
// the writer is the only one writing.
func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// waitCheckpointed waits until a checkpoint has grown the database file
// past size.
func waitCheckpointed(t *testing.T, path string, size int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); fileSize(t, path) <= size; {
		if time.Now().After(deadline) {
			t.Fatalf("database file still %d bytes: nothing was checkpointed", size)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCheckpointWaitsForAQuietMoment: a due checkpoint does not run while
// commits keep coming, and runs once they stop.
func TestCheckpointWaitsForAQuietMoment(t *testing.T) {
	setCheckpointPolicy(t, 8, 1<<40, 300*time.Millisecond)
	db, path := openTemp(t)
	w := db.DeliveryWriter()
	defer w.Close()
	before := fileSize(t, path)
	insertFor(t, w, "busy", 600*time.Millisecond) // far past due, never quiet
	if after := fileSize(t, path); after != before {
		t.Fatalf("database file went from %d to %d bytes during the burst: a checkpoint ran", before, after)
	}
	waitCheckpointed(t, path, before)
}

// TestCheckpointForcedWhenTheWALIsLong: past checkpointForce deliveries the
// checkpoint runs even though commits keep coming.
func TestCheckpointForcedWhenTheWALIsLong(t *testing.T) {
	setCheckpointPolicy(t, 8, 40, time.Hour)
	db, path := openTemp(t)
	w := db.DeliveryWriter()
	defer w.Close()
	before := fileSize(t, path)
	insertFor(t, w, "long", 300*time.Millisecond) // about 200 deliveries
	waitCheckpointed(t, path, before)
}

// TestDeliveryWriterConnectionStaysPrivate: the writer's connection
// commits with synchronous=FULL like every other, never checkpoints itself,
// and once the writer is closed it is not handed out by the pool again.
func TestDeliveryWriterConnectionStaysPrivate(t *testing.T) {
	db, _ := openTemp(t)
	ctx := context.Background()
	w := db.DeliveryWriter()
	if _, err := w.InsertDeliveries(ctx, []NewDelivery{newDelivery("a", true)}); err != nil {
		t.Fatal(err)
	}
	pragmas := func(q interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}) (sync, autocheckpoint int) {
		t.Helper()
		if err := q.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&sync); err != nil {
			t.Fatal(err)
		}
		if err := q.QueryRowContext(ctx, `PRAGMA wal_autocheckpoint`).Scan(&autocheckpoint); err != nil {
			t.Fatal(err)
		}
		return sync, autocheckpoint
	}
	if sync, ac := pragmas(w.conn); sync != 2 || ac != 0 {
		t.Errorf("writer: synchronous %d, wal_autocheckpoint %d; want 2 (FULL), 0", sync, ac)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var conns []*sql.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range db.Stats().OpenConnections + 1 {
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if sync, ac := pragmas(c); sync != 2 || ac == 0 {
			t.Fatalf("a pool connection after the writer closed: synchronous %d, wal_autocheckpoint %d; want 2 (FULL), > 0", sync, ac)
		}
	}
}
