package location_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/location"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// diskStore is a store.Bindings that keeps what it committed and refuses
// every write while full is set, as SQLite does on a full disk.
type diskStore struct {
	full atomic.Bool
	mu   sync.Mutex
	rows map[store.BindingKey]store.Binding
}

func newDiskStore() *diskStore { return &diskStore{rows: map[store.BindingKey]store.Binding{}} }

func (*diskStore) LoadBindings(context.Context) ([]store.Binding, error) { return nil, nil }
func (d *diskStore) ApplyBindings(_ context.Context, up []store.Binding, del []store.BindingKey) error {
	if d.full.Load() {
		return errors.New("save bindings: database or disk is full (13)")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, b := range up {
		d.rows[b.Key()] = b
	}
	for _, k := range del {
		delete(d.rows, k)
	}
	return nil
}

// committed returns the stored bindings as "ext contact expiry" lines, sorted.
func (d *diskStore) committed() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, b := range d.rows {
		out = append(out, line(b))
	}
	sort.Strings(out)
	return out
}

func line(b store.Binding) string {
	return fmt.Sprintf("%s %s %d", b.Extension, b.Contact, b.ExpiresAt.UnixNano())
}

// inMemory returns the table's bindings like committed.
func inMemory(tb *location.Table) []string {
	var out []string
	for _, b := range tb.All() {
		out = append(out, line(b))
	}
	sort.Strings(out)
	return out
}

func startTable(t *testing.T, db store.Bindings) *location.Table {
	t.Helper()
	tb := location.New(db, quiet, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tb.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return tb
}

func bind(ext, contact string, exp time.Time) store.Binding {
	return store.Binding{Domain: "pbx.test", Extension: ext, Contact: contact, Source: "192.0.2.1:5060",
		Transport: "UDP", CallID: "c-" + ext, CSeq: 1, AuthUser: ext, Realm: "pbx.test", RegisteredAt: exp.Add(-time.Hour),
		ExpiresAt: exp}
}

func set(tb *location.Table, ext string, bs ...store.Binding) error {
	_, err := tb.Update(context.Background(), "pbx.test", ext, func([]store.Binding) ([]store.Binding, error) {
		return bs, nil
	})
	return err
}

// TestUpdateReturnsAfterCommit: a nil error from Update means the store
// has the change.
func TestUpdateReturnsAfterCommit(t *testing.T) {
	disk := newDiskStore()
	tb := startTable(t, disk)
	exp := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	for i := range 50 {
		if err := set(tb, fmt.Sprint(2000+i), bind(fmt.Sprint(2000+i), "sip:a@192.0.2.1", exp)); err != nil {
			t.Fatal(err)
		}
		if got := len(disk.committed()); got != i+1 {
			t.Fatalf("after %d Updates returned the store holds %d bindings", i+1, got)
		}
	}
}

// TestFullStoreRefusesAndRollsBack: while the store cannot write, a new
// binding, a refresh and a removal each fail with ErrUnavailable and leave
// the table as the store has it; once it writes again, Updates succeed.
func TestFullStoreRefusesAndRollsBack(t *testing.T) {
	disk := newDiskStore()
	tb := startTable(t, disk)
	exp := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	a := bind("2001", "sip:a@192.0.2.1", exp)
	if err := set(tb, "2001", a); err != nil {
		t.Fatal(err)
	}
	disk.full.Store(true)
	b := bind("2001", "sip:b@192.0.2.2", exp)
	refreshed := a
	refreshed.ExpiresAt = exp.Add(time.Hour)
	// Each change goes through a failed write (Failures grows), not only
	// the early refusal while the writer backs off.
	for _, c := range []struct {
		name string
		bs   []store.Binding
	}{{"add", []store.Binding{a, b}}, {"refresh", []store.Binding{refreshed}}, {"remove", nil}} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			failures := tb.Health().Failures
			err := set(tb, "2001", c.bs...)
			var ue *location.UnavailableError
			if !errors.Is(err, location.ErrUnavailable) || !errors.As(err, &ue) {
				t.Fatalf("%s on a full store: err = %v, want ErrUnavailable", c.name, err)
			}
			if got, want := inMemory(tb), disk.committed(); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("%s on a full store: memory %v, store %v", c.name, got, want)
			}
			if tb.Health().Failures > failures {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the writer never tried the store again", c.name)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if h := tb.Health(); !h.Down || h.Err == nil || h.Failures == 0 {
		t.Fatalf("Health = %+v, want down with the store's error", h)
	}
	if !tb.HasSource(netip.MustParseAddr("192.0.2.1")) {
		t.Fatal("the source of the kept binding is no longer counted")
	}
	disk.full.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := set(tb, "2001", a, b)
		if err == nil {
			break
		}
		if !errors.Is(err, location.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("after space returned: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if h := tb.Health(); h.Down {
		t.Fatalf("Health = %+v after a successful write", h)
	}
	if got, want := inMemory(tb), disk.committed(); len(got) != 2 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("memory %v, store %v; want both bindings in both", got, want)
	}
}

// TestConcurrentUpdatesWhileStoreFails: many registrars update while the
// store fails and recovers; afterwards the table holds exactly what the
// store holds, and every Update that returned nil is in the store.
func TestConcurrentUpdatesWhileStoreFails(t *testing.T) {
	disk := newDiskStore()
	tb := startTable(t, disk)
	base := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	var mu sync.Mutex
	acked := map[string]string{} // ext -> line of its last acknowledged binding ("" = removed)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ext := fmt.Sprint(3000 + g*3 + i%3) // each goroutine its own extensions
				var bs []store.Binding
				if i%5 != 4 {
					bs = []store.Binding{bind(ext, "sip:"+ext+"@192.0.2.9", base.Add(time.Duration(g*100000+i)*time.Millisecond))}
				}
				err := set(tb, ext, bs...)
				mu.Lock()
				if err == nil {
					acked[ext] = ""
					if len(bs) > 0 {
						acked[ext] = line(bs[0])
					}
				} else if !errors.Is(err, location.ErrUnavailable) {
					mu.Unlock()
					t.Error(err)
					return
				}
				mu.Unlock()
			}
		}()
	}
	for range 3 {
		time.Sleep(30 * time.Millisecond)
		disk.full.Store(true)
		time.Sleep(400 * time.Millisecond) // longer than a batch's retries
		disk.full.Store(false)
	}
	close(stop)
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for tb.Flush(context.Background()) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the table did not recover")
		}
		time.Sleep(20 * time.Millisecond)
	}
	got, want := inMemory(tb), disk.committed()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("memory and store differ:\nmemory %v\nstore  %v", got, want)
	}
	stored := map[string]bool{}
	for _, l := range want {
		stored[l] = true
	}
	for ext, l := range acked {
		if l != "" && !stored[l] {
			t.Errorf("%s: acknowledged %q is not stored", ext, l)
		}
	}
	if h := tb.Health(); h.Failures == 0 {
		t.Error("the store never failed: the test proved nothing")
	}
}
