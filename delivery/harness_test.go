package delivery

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/postrider/postrider/internal/dnsr"
	"github.com/postrider/postrider/internal/testdns"
	"github.com/postrider/postrider/mailstore"
)

// ---- DNS: internal/testdns on loopback ----

// zone wraps the test DNS server with the calls the tests use.
type zone struct{ *testdns.Server }

func (z zone) add(t *testing.T, records ...string) {
	t.Helper()
	for _, r := range records {
		if err := z.Add(r); err != nil {
			t.Fatal(err)
		}
	}
}

// startDNS serves a zone on 127.0.0.1 and returns it with a resolver that
// asks only it.
func startDNS(t *testing.T) (zone, *net.Resolver) {
	t.Helper()
	s := testdns.Start(t)
	r, err := dnsr.New(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	return zone{s}, r
}

// ---- addresses: one port on several loopback addresses ----

// testNet is a set of loopback addresses sharing one port, as every MX
// listens on 25.
type testNet struct {
	port int
	next int
	base [3]byte
}

func newTestNet(t *testing.T) *testNet {
	t.Helper()
	for range 50 {
		n := &testNet{base: [3]byte{127, byte(1 + mrand.IntN(250)), byte(mrand.IntN(256))}, next: 2}
		ln, err := net.Listen("tcp", n.ip(1)+":0")
		if err != nil {
			continue
		}
		n.port = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		return n
	}
	t.Fatal("no loopback port")
	return nil
}

func (n *testNet) ip(i int) string {
	return fmt.Sprintf("%d.%d.%d.%d", n.base[0], n.base[1], n.base[2], i)
}

// addr returns a fresh address (nothing listens on it yet).
func (n *testNet) addr() string {
	n.next++
	return n.ip(n.next)
}

func (n *testNet) listen(t *testing.T, ip string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(n.port)))
	if err != nil {
		t.Fatalf("listen %s: %v", ip, err)
	}
	return ln
}

// ---- a receiving SMTP server (go-smtp's server package) ----

type received struct {
	From  string
	Rcpts []string
	Data  string
	TLS   bool
	Helo  string
	Auth  string // user:pass
	// Remote is the client's address as the receiver saw it.
	Remote string
}

type receiver struct {
	ip       string
	srv      *smtp.Server
	accepts  atomic.Int64
	mu       sync.Mutex
	msgs     []received
	rcptHook func(to string, n int) error // n: this recipient's RCPT count so far
	rcptSeen map[string]int
	notify   map[string]string // NOTIFY= as received, by recipient
	block    chan struct{}     // when set, the first RCPT waits on it
	blocked  atomic.Bool
	mechs    []string // AUTH mechanisms offered (needs TLS unless insecure)
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// startReceiver runs a server on ip; tlsCert nil: no STARTTLS.
func startReceiver(t *testing.T, n *testNet, ip string, tlsCert *tls.Certificate, utf8 bool) *receiver {
	t.Helper()
	r := &receiver{ip: ip, rcptSeen: map[string]int{}, notify: map[string]string{}}
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		_, tlsOn := c.TLSConnectionState()
		remote, _, _ := net.SplitHostPort(c.Conn().RemoteAddr().String())
		return &rsession{r: r, tls: tlsOn, helo: c.Hostname(), remote: remote}, nil
	}))
	s.Domain = "rcv.test"
	s.EnableSMTPUTF8 = utf8
	s.EnableDSN = true
	s.ReadTimeout = 30 * time.Second
	s.WriteTimeout = 30 * time.Second
	s.AllowInsecureAuth = false
	if tlsCert != nil {
		s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*tlsCert}}
	}
	r.srv = s
	ln := n.listen(t, ip)
	go func() { _ = s.Serve(countingListener{ln, &r.accepts}) }()
	t.Cleanup(func() { s.Close() })
	return r
}

func (r *receiver) messages() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.msgs...)
}

type rsession struct {
	r      *receiver
	tls    bool
	helo   string
	from   string
	rcpts  []string
	auth   string
	remote string
}

func (s *rsession) Reset()        { s.from, s.rcpts = "", nil }
func (s *rsession) Logout() error { return nil }
func (s *rsession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}
func (s *rsession) Rcpt(to string, opts *smtp.RcptOptions) error {
	if s.r.block != nil && s.r.blocked.CompareAndSwap(false, true) {
		<-s.r.block
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "blocked"}
	}
	s.r.mu.Lock()
	s.r.rcptSeen[to]++
	if opts != nil && len(opts.Notify) > 0 {
		var n []string
		for _, x := range opts.Notify {
			n = append(n, string(x))
		}
		s.r.notify[to] = strings.Join(n, ",")
	}
	n := s.r.rcptSeen[to]
	hook := s.r.rcptHook
	s.r.mu.Unlock()
	if hook != nil {
		if err := hook(to, n); err != nil {
			return err
		}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *rsession) Data(rd io.Reader) error {
	b, err := io.ReadAll(rd)
	if err != nil {
		return err
	}
	s.r.mu.Lock()
	s.r.msgs = append(s.r.msgs, received{From: s.from, Rcpts: s.rcpts, Data: string(b), TLS: s.tls, Helo: s.helo, Auth: s.auth, Remote: s.remote})
	s.r.mu.Unlock()
	return nil
}

// AuthSession, for the smarthost tests.
func (s *rsession) AuthMechanisms() []string { return s.r.mechs }
func (s *rsession) Auth(mech string) (sasl.Server, error) {
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(_, user, pass string) error {
			if user != "relayuser" || pass != "relaypass" {
				return smtp.ErrAuthFailed
			}
			s.auth = user + ":" + pass
			return nil
		}), nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// ---- certificates: a test CA ----

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Postrider test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return &testCA{cert: c, key: key, pool: pool}
}

// issue makes a server certificate for names, signed by the CA.
func (ca *testCA) issue(t *testing.T, names ...string) *tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(mrand.Int64()), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// ---- an in-memory queue (until the PostgreSQL queue is merged) ----

type memStore struct {
	mu     sync.Mutex
	now    func() time.Time
	nextID int64
	items  map[int64]*mailstore.QueueItem
	bodies map[int64][]byte
	inbox  map[int64][][]byte // local deliveries by account
	claims atomic.Int64
}

func newMemStore(now func() time.Time) *memStore {
	return &memStore{now: now, items: map[int64]*mailstore.QueueItem{}, bodies: map[int64][]byte{}, inbox: map[int64][][]byte{}}
}

func (m *memStore) Deliver(ctx context.Context, d *mailstore.Delivery) (mailstore.DeliveryResult, error) {
	b, err := io.ReadAll(d.Body)
	if err != nil {
		return mailstore.DeliveryResult{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var res mailstore.DeliveryResult
	for _, r := range d.Recipients {
		m.inbox[r.AccountID] = append(m.inbox[r.AccountID], b)
	}
	if len(d.Remote) > 0 {
		m.nextID++
		it := &mailstore.QueueItem{ID: m.nextID, MailFrom: d.MailFrom, SenderAccount: d.SenderAccount, Params: d.Params,
			Size: int64(len(b)), CreatedAt: m.now(), NextAttempt: m.now()}
		for i, r := range d.Remote {
			_, dom, _ := strings.Cut(r.Address, "@")
			it.Recipients = append(it.Recipients, mailstore.QueueRecipient{ID: m.nextID*100 + int64(i), Address: r.Address,
				Domain: strings.ToLower(dom), ORCPT: r.ORCPT, Notify: r.Notify, State: mailstore.RcptPending})
		}
		m.items[it.ID] = it
		m.bodies[it.ID] = b
		res.QueueID = it.ID
	}
	return res, nil
}

func copyItem(it *mailstore.QueueItem, pendingOnly bool) mailstore.QueueItem {
	c := *it
	c.Recipients = nil
	for _, r := range it.Recipients {
		if !pendingOnly || r.State == mailstore.RcptPending {
			c.Recipients = append(c.Recipients, r)
		}
	}
	return c
}

func (m *memStore) ClaimQueue(ctx context.Context, holder string, now time.Time, lease time.Duration, max int) ([]mailstore.QueueItem, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.claims.Add(1)
	var out []mailstore.QueueItem
	for id := int64(1); id <= m.nextID && len(out) < max; id++ {
		it := m.items[id]
		if it == nil || it.NextAttempt.After(now) || (it.LeaseHolder != "" && it.LeaseUntil.After(now)) {
			continue
		}
		it.LeaseHolder, it.LeaseUntil = holder, now.Add(lease)
		it.NextAttempt = it.LeaseUntil
		out = append(out, copyItem(it, true))
	}
	return out, nil
}

func (m *memStore) RenewQueueLease(ctx context.Context, holder string, ids []int64, now time.Time, lease time.Duration) ([]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []int64
	for _, id := range ids {
		if it := m.items[id]; it != nil && it.LeaseHolder == holder {
			it.LeaseUntil = now.Add(lease)
			it.NextAttempt = it.LeaseUntil
			out = append(out, id)
		}
	}
	return out, nil
}

func (m *memStore) OpenQueued(ctx context.Context, id int64) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.bodies[id]
	if !ok {
		return nil, mailstore.ErrNoSuchQueueItem
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (m *memStore) FinishAttempts(ctx context.Context, holder string, as []mailstore.QueueAttempt) []error {
	errs := make([]error, len(as))
	for i, a := range as {
		errs[i] = m.FinishAttempt(ctx, holder, a)
	}
	return errs
}

func (m *memStore) FinishAttempt(ctx context.Context, holder string, a mailstore.QueueAttempt) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	it := m.items[a.ItemID]
	if it == nil || it.LeaseHolder != holder {
		return mailstore.ErrLeaseLost
	}
	seen := map[int64]bool{}
	for _, res := range a.Results {
		ok := false
		for _, r := range it.Recipients {
			ok = ok || (r.ID == res.RecipientID && r.State == mailstore.RcptPending)
		}
		if !ok || seen[res.RecipientID] {
			return fmt.Errorf("%w: result for recipient %d", mailstore.ErrInvalidArgument, res.RecipientID)
		}
		seen[res.RecipientID] = true
	}
	for _, res := range a.Results {
		for i := range it.Recipients {
			r := &it.Recipients[i]
			if r.ID == res.RecipientID {
				r.State, r.LastCode, r.LastReply, r.RemoteMTA = res.State, res.Code, res.Reply, res.RemoteMTA
				r.Attempts++
				r.LastAttempt = a.At
			}
		}
	}
	it.LeaseHolder, it.LeaseUntil = "", time.Time{}
	if !a.Warned.IsZero() {
		it.WarnedAt = a.Warned
	}
	pending := false
	for _, r := range it.Recipients {
		pending = pending || r.State == mailstore.RcptPending
	}
	if !pending {
		delete(m.items, it.ID)
		delete(m.bodies, it.ID)
		return nil
	}
	if a.Next.IsZero() {
		return fmt.Errorf("%w: no next attempt", mailstore.ErrInvalidArgument)
	}
	it.NextAttempt = a.Next
	return nil
}

func (m *memStore) ListQueue(ctx context.Context, max int) ([]mailstore.QueueItem, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []mailstore.QueueItem
	for id := int64(1); id <= m.nextID; id++ {
		if it := m.items[id]; it != nil && (max <= 0 || len(out) < max) {
			out = append(out, copyItem(it, false))
		}
	}
	return out, nil
}

func (m *memStore) GetQueueItem(ctx context.Context, id int64) (mailstore.QueueItem, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	it := m.items[id]
	if it == nil {
		return mailstore.QueueItem{}, mailstore.ErrNoSuchQueueItem
	}
	return copyItem(it, false), nil
}

func (m *memStore) RetryQueue(ctx context.Context, ids []int64) (int, error) {
	return 0, errors.New("memStore: RetryQueue is not used by delivery")
}

func (m *memStore) RemoveQueueItem(ctx context.Context, id int64) error {
	return errors.New("memStore: RemoveQueueItem is not used by delivery")
}

func (m *memStore) QueueStats(ctx context.Context, now time.Time) (mailstore.QueueStats, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var s mailstore.QueueStats
	for _, it := range m.items {
		s.Items++
		for _, r := range it.Recipients {
			if r.State == mailstore.RcptPending {
				s.Recipients++
			}
		}
		s.OldestAge = max(s.OldestAge, now.Sub(it.CreatedAt))
	}
	return s, nil
}

func (m *memStore) inboxOf(acct int64) [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([][]byte(nil), m.inbox[acct]...)
}

// ---- the test world ----

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type world struct {
	t     *testing.T
	zone  zone
	res   *net.Resolver
	net   *testNet
	ca    *testCA
	clock *clock
	store Store
	mem   *memStore // when store is the in-memory one
	reg   *prometheus.Registry
}

func newWorld(t *testing.T) *world {
	t.Helper()
	z, r := startDNS(t)
	w := &world{t: t, zone: z, res: r, net: newTestNet(t), ca: newCA(t), clock: &clock{t: time.Now()}, reg: prometheus.NewRegistry()}
	w.mem = newMemStore(w.clock.Now)
	w.store = w.mem
	return w
}

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func (w *world) config() Config {
	return Config{
		Hostname: "out.sender.test", Resolver: w.res, Port: w.net.port, RootCAs: w.ca.pool,
		Now: w.clock.Now, RetryMin: time.Minute, RetryMax: time.Hour, QueueLifetime: 120 * time.Hour,
		Logger:  slog.New(slog.NewTextHandler(tlogWriter{w.t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics: w.reg,
	}
}

func (w *world) engine(cfg Config) *Engine {
	w.t.Helper()
	e, err := New(cfg, w.store)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.Shutdown(ctx)
	})
	return e
}

// enqueue queues a message from sender account 7 (alice@sender.test).
func (w *world) enqueue(from string, params map[string]string, rcpts ...string) int64 {
	w.t.Helper()
	var rr []mailstore.RemoteRecipient
	for _, r := range rcpts {
		rr = append(rr, mailstore.RemoteRecipient{Address: r})
	}
	body := "From: <" + from + ">\r\nTo: <" + rcpts[0] + ">\r\nSubject: hello\r\nMessage-ID: <m" + strconv.Itoa(mrand.Int()) + "@sender.test>\r\n\r\nHello there.\r\n.leading dot\r\n"
	res, err := w.store.Deliver(context.Background(), &mailstore.Delivery{
		MailFrom: from, Body: strings.NewReader(body), Params: params, Remote: rr, SenderAccount: 7,
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return res.QueueID
}

func (w *world) item(id int64) (mailstore.QueueItem, bool) {
	w.t.Helper()
	it, err := w.store.GetQueueItem(context.Background(), id)
	if errors.Is(err, mailstore.ErrNoSuchQueueItem) {
		return it, false
	}
	if err != nil {
		w.t.Fatal(err)
	}
	return it, true
}

// waitFor polls cond until it holds, failing the test after a generous
// bound (a hang, not a measurement).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
