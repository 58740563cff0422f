// Package metrics exposes switchboard's counters in the Prometheus text
// format (github.com/prometheus/client_golang). Counters are fed as things
// happen: the journal's and the call records' batched writes pass through
// Journal and Calls, which count each event by kind and cause and time
// each batch. Gauges read in-memory state at scrape time (the location
// table, the ban list, the writers' queues, the dialogs): a scrape never
// queries the database.
package metrics

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Metrics is the server's metric registry. The zero value is not usable;
// create with New. Safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	events    *prometheus.CounterVec // journal events by kind, cause
	auth      *prometheus.CounterVec // REGISTER/INVITE authentication outcomes by cause
	calls     *prometheus.CounterVec // ended calls by cause
	writeTime *prometheus.HistogramVec
	writeErrs *prometheus.CounterVec

	mu    sync.Mutex
	ended map[int64]struct{} // call ids counted as ended (bounded)
}

// Sources are the in-memory states read at scrape time; nil fields are
// left out.
type Sources struct {
	// RegistrationsByDomain counts the live bindings per domain.
	RegistrationsByDomain func() map[string]int
	// ActiveBans counts the addresses banned now.
	ActiveBans func() int
	// ActiveCalls counts the calls (dialogs) in progress.
	ActiveCalls func() int
	// JournalQueue, CallsQueue: items waiting in the batched writers;
	// JournalDropped, CallsDropped: items they dropped.
	JournalQueue, CallsQueue     func() int
	JournalDropped, CallsDropped func() int64
	// Security counters (messages dropped as banned, over the rate limit,
	// from scanners, malformed; bans imposed).
	BannedDropped, RateLimited, Scanners, Malformed, BansImposed func() int64
	// Extensions counts the directory's extensions.
	Extensions func() int
	// InHand counts the requests the stateless path (REGISTERs, a call's
	// first 407) is handling now; Shed and Absorbed count the REGISTERs
	// answered 503 for overload and the retransmissions absorbed so far.
	InHand         func() int
	Shed, Absorbed func() int64
	// Stale counts the REGISTERs and new calls' INVITEs the UDP readers dropped unread because
	// they had waited in the socket's queue past their limit.
	Stale func() int64
}

// New returns a registry with the Go runtime and process collectors and
// switchboard's metrics read from src.
func New(src Sources) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), ended: map[int64]struct{}{}}
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_journal_events_total",
		Help: "Decisions journaled, by kind (register, invite, binding, ban, console, admin, ...) and cause."}, []string{"kind", "cause"})
	m.auth = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_auth_outcomes_total",
		Help: "REGISTER outcomes by cause (registered, wrong_password, extension_missing, acl_denied, ...)."}, []string{"cause"})
	m.calls = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_calls_total",
		Help: "Ended calls by cause (NORMAL_CLEARING, USER_NOT_REGISTERED, ...)."}, []string{"cause"})
	m.writeTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "switchboard_writer_batch_seconds",
		Help:    "Time to write one batch of the batched writers (journal, calls, bindings) to the database.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}, []string{"writer"})
	m.writeErrs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_writer_errors_total",
		Help: "Batches the batched writers failed to write."}, []string{"writer"})
	m.reg.MustRegister(m.events, m.auth, m.calls, m.writeTime, m.writeErrs,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reg.MustRegister(&gauges{src: src})
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{MaxRequestsInFlight: 4, Timeout: 10 * time.Second})
}

// Registry is the underlying registry (tests).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ObserveEvent counts one journal event.
func (m *Metrics) ObserveEvent(e journal.Event) {
	m.events.WithLabelValues(e.Kind, string(e.Cause)).Inc()
	if e.Kind == journal.KindRegister {
		m.auth.WithLabelValues(string(e.Cause)).Inc()
	}
}

// ObserveCall counts a call record snapshot: an ended call once.
func (m *Metrics) ObserveCall(r store.Call) {
	if r.End.IsZero() {
		return
	}
	m.mu.Lock()
	_, seen := m.ended[r.ID]
	if !seen {
		if len(m.ended) >= 65536 {
			clear(m.ended) // a late duplicate snapshot may count twice; memory stays bounded
		}
		m.ended[r.ID] = struct{}{}
	}
	m.mu.Unlock()
	if !seen {
		m.calls.WithLabelValues(string(r.Cause)).Inc()
	}
}

func (m *Metrics) observeWrite(writer string, start time.Time, err error) {
	m.writeTime.WithLabelValues(writer).Observe(time.Since(start).Seconds())
	if err != nil {
		m.writeErrs.WithLabelValues(writer).Inc()
	}
}

// Journal wraps the journal's store: every batch written is counted
// (events by kind and cause) and timed.
func (m *Metrics) Journal(db store.Journal) store.Journal { return &journalStore{Journal: db, m: m} }

type journalStore struct {
	store.Journal
	m *Metrics
}

func (j *journalStore) InsertEvents(ctx context.Context, events []store.Event) error {
	start := time.Now()
	err := j.Journal.InsertEvents(ctx, events)
	j.m.observeWrite("journal", start, err)
	for _, e := range events { // counted once written: a retried batch is counted when it succeeds
		if err == nil {
			j.m.ObserveEvent(e)
		}
	}
	return err
}

// Calls wraps the call records' store: ended calls are counted by cause
// and each batch is timed.
func (m *Metrics) Calls(db store.Calls) store.Calls { return &callStore{Calls: db, m: m} }

type callStore struct {
	store.Calls
	m *Metrics
}

func (c *callStore) SaveCalls(ctx context.Context, recs []store.Call) error {
	start := time.Now()
	err := c.Calls.SaveCalls(ctx, recs)
	c.m.observeWrite("calls", start, err)
	if err == nil {
		for _, r := range recs {
			c.m.ObserveCall(r)
		}
	}
	return err
}

// Bindings wraps the location table's store: each batch is timed.
func (m *Metrics) Bindings(db store.Bindings) store.Bindings {
	return &bindingStore{Bindings: db, m: m}
}

type bindingStore struct {
	store.Bindings
	m *Metrics
}

func (b *bindingStore) ApplyBindings(ctx context.Context, upsert []store.Binding, del []store.BindingKey) error {
	start := time.Now()
	err := b.Bindings.ApplyBindings(ctx, upsert, del)
	b.m.observeWrite("bindings", start, err)
	return err
}

// gauges reads Sources at scrape time.
type gauges struct{ src Sources }

var (
	descRegs      = prometheus.NewDesc("switchboard_registrations", "Live registrations (bindings) by domain.", []string{"domain"}, nil)
	descBans      = prometheus.NewDesc("switchboard_bans", "Addresses banned now.", nil, nil)
	descCalls     = prometheus.NewDesc("switchboard_active_calls", "Calls in progress (dialogs).", nil, nil)
	descQueue     = prometheus.NewDesc("switchboard_writer_queue_depth", "Items waiting in a batched writer's queue.", []string{"writer"}, nil)
	descDropped   = prometheus.NewDesc("switchboard_writer_dropped_total", "Items a batched writer dropped (queue full or write kept failing).", []string{"writer"}, nil)
	descSecurity  = prometheus.NewDesc("switchboard_security_total", "Access control: SIP messages dropped by reason (banned, rate_limited, scanner, malformed) and bans imposed (bans).", []string{"what"}, nil)
	descExts      = prometheus.NewDesc("switchboard_extensions", "Extensions in the directory.", nil, nil)
	descInHand    = prometheus.NewDesc("switchboard_requests_in_hand", "Requests the stateless path (REGISTERs, a call's first 407) is handling now (at most 2,048).", nil, nil)
	descStateless = prometheus.NewDesc("switchboard_stateless_total", "REGISTERs shed with 503 for overload (shed), retransmissions absorbed (absorbed), REGISTERs and new calls' INVITEs dropped unread after waiting too long in the UDP socket's queue (stale).", []string{"what"}, nil)
)

func (g *gauges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRegs, descBans, descCalls, descQueue, descDropped, descSecurity, descExts, descInHand, descStateless} {
		ch <- d
	}
}

func (g *gauges) Collect(ch chan<- prometheus.Metric) {
	s := g.src
	if s.RegistrationsByDomain != nil {
		for d, n := range s.RegistrationsByDomain() {
			ch <- prometheus.MustNewConstMetric(descRegs, prometheus.GaugeValue, float64(n), d)
		}
	}
	gauge := func(d *prometheus.Desc, f func() int, labels ...string) {
		if f != nil {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(f()), labels...)
		}
	}
	counter := func(d *prometheus.Desc, f func() int64, labels ...string) {
		if f != nil {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(f()), labels...)
		}
	}
	gauge(descBans, s.ActiveBans)
	gauge(descCalls, s.ActiveCalls)
	gauge(descExts, s.Extensions)
	gauge(descQueue, s.JournalQueue, "journal")
	gauge(descQueue, s.CallsQueue, "calls")
	counter(descDropped, s.JournalDropped, "journal")
	counter(descDropped, s.CallsDropped, "calls")
	counter(descSecurity, s.BannedDropped, "banned")
	counter(descSecurity, s.RateLimited, "rate_limited")
	counter(descSecurity, s.Scanners, "scanner")
	counter(descSecurity, s.Malformed, "malformed")
	counter(descSecurity, s.BansImposed, "bans")
	gauge(descInHand, s.InHand)
	counter(descStateless, s.Shed, "shed")
	counter(descStateless, s.Absorbed, "absorbed")
	counter(descStateless, s.Stale, "stale")
}
