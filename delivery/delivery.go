// Package delivery sends queued mail to other domains: workers on every
// node claim items of the store's outbound queue (one holder per item
// through leases), route them by MX or through a smarthost, speak SMTP
// with STARTTLS and MTA-STS, record each attempt and send delivery status
// notifications. It is never imported by the IMAP and POP3 frontends.
package delivery

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postrider/postrider/mailstore"
)

// Store is what delivery needs of the store: the queue, and Deliver for
// DSNs (to the sender's mailbox, or queued to a remote sender).
type Store interface {
	mailstore.Queue
	Deliver(ctx context.Context, d *mailstore.Delivery) (mailstore.DeliveryResult, error)
}

// Config configures an Engine. Zero values take the defaults.
type Config struct {
	Hostname string        // EHLO name, Reporting-MTA of DSNs (POSTRIDER_HOSTNAME)
	Resolver *net.Resolver // DNS (internal/dnsr); nil: the system's

	// RelayHost ("host:port") sends all mail through a smarthost instead
	// of by MX. With RelayUsername, TLS is required (STARTTLS, or
	// implicit TLS on port 465), the certificate must be valid for the
	// relay's name, and AUTH PLAIN (or LOGIN) is used.
	RelayHost, RelayUsername, RelayPassword string

	// SourceAddrs are the local addresses outbound connections come
	// from: at most one IPv4 and one IPv6 (POSTRIDER_OUTBOUND_IPS); a
	// target of a family without one is dialled from the address the
	// system chooses.
	SourceAddrs []netip.Addr

	Workers       int           // concurrent deliveries (connections) per node; default 16
	QueueLifetime time.Duration // pending recipients fail after this; default 120h
	DelayWarning  time.Duration // a delay DSN once after this; default 4h; < 0: never
	RetryMin      time.Duration // first back-off; default 1 min, doubling
	RetryMax      time.Duration // back-off cap; default 1 h
	Lease         time.Duration // queue lease, renewed while an attempt runs; default 5 min
	PollInterval  time.Duration // how often the queue is read without a Kick; default 5 s
	StatsInterval time.Duration // queue metrics sampling; default 15 s
	MaxPerConn    int           // messages sent over one connection; default 20

	// RootCAs verifies the certificates that must be valid (MTA-STS
	// policy hosts and MX hosts under an enforce policy, the relay); nil:
	// the system's roots.
	RootCAs *x509.CertPool
	// Holder names this process in queue leases; default hostname, pid
	// and a random part.
	Holder string
	// Port and HTTPSPort replace 25 and 443: for tests only, never
	// configurable in production.
	Port, HTTPSPort int
	// Now is the clock (tests); default time.Now.
	Now func() time.Time

	Logger  *slog.Logger
	Metrics prometheus.Registerer // nil: metrics are not registered
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Workers <= 0 {
		c.Workers = 16
	}
	def(&c.QueueLifetime, 120*time.Hour)
	def(&c.DelayWarning, 4*time.Hour)
	def(&c.RetryMin, time.Minute)
	def(&c.RetryMax, time.Hour)
	def(&c.Lease, 5*time.Minute)
	def(&c.PollInterval, 5*time.Second)
	def(&c.StatsInterval, 15*time.Second)
	if c.MaxPerConn <= 0 {
		c.MaxPerConn = 20
	}
	if c.Port == 0 {
		c.Port = 25
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Resolver == nil {
		c.Resolver = &net.Resolver{PreferGo: true}
	}
	if c.Hostname == "" {
		c.Hostname, _ = os.Hostname()
	}
	if c.Holder == "" {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		c.Holder = fmt.Sprintf("%s:%d:%s", c.Hostname, os.Getpid(), hex.EncodeToString(b))
	}
}

// Engine runs the delivery workers of one node.
type Engine struct {
	cfg     Config
	st      Store
	log     *slog.Logger
	metrics *metrics
	sts     *stsCache

	kick      chan struct{}
	freed     chan struct{}
	sem       chan struct{}
	stopping  chan struct{}
	stopOnce  sync.Once
	startOnce sync.Once
	loopDone  chan struct{}
	runCtx    context.Context
	cancelRun context.CancelFunc
	jobs      sync.WaitGroup

	conns connCache

	mu         sync.Mutex
	activeJobs int
	inflight   map[int64]*itemRun
}

// New makes an engine; Start runs it.
func New(cfg Config, st Store) (*Engine, error) {
	cfg.defaults()
	if cfg.RelayHost != "" {
		if _, _, err := net.SplitHostPort(cfg.RelayHost); err != nil {
			return nil, fmt.Errorf("relay host %q: %w", cfg.RelayHost, err)
		}
	}
	if cfg.RelayUsername != "" && cfg.RelayHost == "" {
		return nil, errors.New("relay credentials without a relay host")
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	e := &Engine{
		cfg: cfg, st: st, log: cfg.Logger.With("proto", "delivery"), metrics: m,
		kick: make(chan struct{}, 1), freed: make(chan struct{}, 1),
		sem: make(chan struct{}, cfg.Workers), stopping: make(chan struct{}), loopDone: make(chan struct{}),
		inflight: map[int64]*itemRun{},
	}
	e.runCtx, e.cancelRun = context.WithCancel(context.Background())
	stsTLS := &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
	e.sts = newSTSCache(cfg.Resolver, stsTLS, cfg.HTTPSPort, e.log, cfg.Now)
	return e, nil
}

// Holder is the name this engine holds queue leases under.
func (e *Engine) Holder() string { return e.cfg.Holder }

// Kick wakes the workers at once (after a local enqueue); it never blocks.
func (e *Engine) Kick() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// Start runs the workers until Shutdown.
func (e *Engine) Start() {
	e.startOnce.Do(func() {
		go e.loop()
		go e.renewLeases()
	})
}

// Shutdown stops claiming, lets in-flight attempts finish until ctx ends,
// then abandons the rest without recording anything: their leases expire
// and another node (or this one, restarted) tries them again.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.stopOnce.Do(func() { close(e.stopping) })
	e.startOnce.Do(func() { close(e.loopDone) }) // never started
	<-e.loopDone
	done := make(chan struct{})
	go func() { e.jobs.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		e.cancelRun()
		<-done
	}
	e.conns.close()
	e.cancelRun()
	return nil
}

func (e *Engine) loop() {
	defer close(e.loopDone)
	poll := time.NewTicker(e.cfg.PollInterval)
	defer poll.Stop()
	stats := time.NewTicker(e.cfg.StatsInterval)
	defer stats.Stop()
	e.sampleStats()
	for {
		for e.claim(nil) {
		}
		e.conns.prune(e.cfg.Now(), false)
		select {
		case <-e.stopping:
			return
		case <-e.kick:
		case <-e.freed:
		case <-poll.C:
		case <-stats.C:
			e.sampleStats()
		}
	}
}

// RunOnce claims the items due now, works them and returns when they are
// recorded: the worker loop's step, for tests and tools. It must not run
// while Start's loop does.
func (e *Engine) RunOnce(ctx context.Context) {
	var wg sync.WaitGroup
	for e.claim(&wg) {
		if ctx.Err() != nil {
			break
		}
	}
	wg.Wait()
	e.conns.prune(time.Time{}, true) // nothing is left open after a step
}

// claim takes due items while there is room, and starts their jobs. It
// reports whether it filled its batch (more may be due).
func (e *Engine) claim(wg *sync.WaitGroup) bool {
	select {
	case <-e.stopping:
		return false
	default:
	}
	e.mu.Lock()
	room := e.cfg.Workers - e.activeJobs
	e.mu.Unlock()
	if room <= 0 {
		return false
	}
	max := min(room*4, 200)
	ctx, cancel := context.WithTimeout(e.runCtx, 30*time.Second)
	items, err := e.st.ClaimQueue(ctx, e.cfg.Holder, e.cfg.Now(), e.cfg.Lease, max)
	cancel()
	if err != nil {
		if e.runCtx.Err() == nil {
			e.log.Warn("claiming queue items failed", "err", err)
		}
		return false
	}
	if len(items) == 0 {
		return false
	}
	jobs := e.plan(items)
	e.mu.Lock()
	e.activeJobs += len(jobs)
	for _, j := range jobs {
		for _, ir := range j.items {
			e.inflight[ir.item.ID] = ir
		}
	}
	e.mu.Unlock()
	for _, j := range jobs {
		e.jobs.Add(1)
		if wg != nil {
			wg.Add(1)
		}
		go func() {
			defer e.jobs.Done()
			if wg != nil {
				defer wg.Done()
			}
			e.sem <- struct{}{}
			e.runJob(e.runCtx, j)
			<-e.sem
			e.jobDone(j)
		}()
	}
	return len(items) == max
}

func (e *Engine) jobDone(j *job) {
	var finished []*itemRun
	e.mu.Lock()
	e.activeJobs--
	for _, ir := range j.items {
		ir.jobsLeft--
		if ir.jobsLeft == 0 {
			finished = append(finished, ir)
			delete(e.inflight, ir.item.ID)
		}
	}
	e.mu.Unlock()
	if len(finished) > 0 {
		e.finish(finished)
	}
	select {
	case e.freed <- struct{}{}:
	default:
	}
}

// renewLeases extends the leases of the items in flight every third of a
// lease; an item whose lease was lost is not recorded by us.
func (e *Engine) renewLeases() {
	t := time.NewTicker(e.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-e.runCtx.Done():
			return
		case <-t.C:
		}
		e.mu.Lock()
		ids := make([]int64, 0, len(e.inflight))
		for id := range e.inflight {
			ids = append(ids, id)
		}
		e.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(e.runCtx, 30*time.Second)
		kept, err := e.st.RenewQueueLease(ctx, e.cfg.Holder, ids, e.cfg.Now(), e.cfg.Lease)
		cancel()
		if err != nil {
			e.log.Warn("renewing queue leases failed", "err", err)
			continue
		}
		held := make(map[int64]bool, len(kept))
		for _, id := range kept {
			held[id] = true
		}
		e.mu.Lock()
		for _, id := range ids {
			if ir := e.inflight[id]; ir != nil && !held[id] {
				ir.lost.Store(true)
				e.log.Warn("queue lease lost", "queue", id)
			}
		}
		e.mu.Unlock()
	}
}

func (e *Engine) sampleStats() {
	ctx, cancel := context.WithTimeout(e.runCtx, 10*time.Second)
	defer cancel()
	s, err := e.st.QueueStats(ctx, e.cfg.Now())
	if err != nil {
		if e.runCtx.Err() == nil {
			e.log.Debug("queue stats failed", "err", err)
		}
		return
	}
	e.metrics.items.Set(float64(s.Items))
	e.metrics.recipients.Set(float64(s.Recipients))
	e.metrics.oldest.Set(s.OldestAge.Seconds())
}
