package delivery

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// itemRun is a claimed item while its jobs run.
type itemRun struct {
	item     mailstore.QueueItem
	jobsLeft int // guarded by Engine.mu
	lost     atomic.Bool

	mu      sync.Mutex
	results map[int64]*result
	aborted bool // a job was cut short by shutdown: record nothing
}

func (ir *itemRun) set(res map[int64]*result) {
	ir.mu.Lock()
	defer ir.mu.Unlock()
	for id, r := range res {
		ir.results[id] = r
	}
}

// job is one destination's share of some items: every recipient at one
// domain (or, with a relay, every recipient) of each item goes in one
// transaction, and the items share a connection.
type job struct {
	domain string // "" with a relay
	items  []*itemRun
	rcpts  [][]mailstore.QueueRecipient // per item
}

// plan groups the claimed items' recipients by destination into jobs of
// at most MaxPerConn messages.
func (e *Engine) plan(items []mailstore.QueueItem) []*job {
	byDest := map[string]*job{}
	var jobs []*job
	for i := range items {
		ir := &itemRun{item: items[i], results: map[int64]*result{}}
		groups := map[string][]mailstore.QueueRecipient{}
		var dests []string
		for _, rc := range ir.item.Recipients {
			if rc.State != mailstore.RcptPending {
				continue
			}
			d := rc.Domain
			if e.cfg.RelayHost != "" {
				d = ""
			}
			if _, ok := groups[d]; !ok {
				dests = append(dests, d)
			}
			groups[d] = append(groups[d], rc)
		}
		for _, d := range dests {
			j := byDest[d]
			if j == nil || len(j.items) >= e.cfg.MaxPerConn {
				j = &job{domain: d}
				byDest[d] = j
				jobs = append(jobs, j)
			}
			j.items = append(j.items, ir)
			j.rcpts = append(j.rcpts, groups[d])
			ir.jobsLeft++
		}
		if len(dests) == 0 {
			// Nothing pending (should not be claimed): finish at once.
			j := &job{items: []*itemRun{ir}, rcpts: [][]mailstore.QueueRecipient{nil}}
			ir.jobsLeft++
			jobs = append(jobs, j)
		}
	}
	return jobs
}

// runJob delivers a job's items: route, then each address in turn until
// every item has had its transaction, reusing a connection for the next
// item.
func (e *Engine) runJob(ctx context.Context, j *job) {
	if len(j.rcpts) == 1 && len(j.rcpts[0]) == 0 {
		return
	}
	start := time.Now()
	targets, fail := e.targets(ctx, j.domain)
	if fail != nil {
		for i, ir := range j.items {
			ir.set(allRcpts(j.rcpts[i], fail))
			e.logAttempt(ir, j.domain, "", "", fail, len(j.rcpts[i]), start)
		}
		e.checkAbort(ctx, j)
		return
	}
	next := 0 // the first item not yet done
	last := tempResult("4.4.1", "no mail host of "+j.domain+" could be reached")
	lastHost := ""
	for _, t := range targets {
		if next == len(j.items) || ctx.Err() != nil {
			break
		}
		lastHost = t.host
		s := e.conns.get(t, e.cfg.Now())
		reused := s != nil
		if s == nil {
			var r *result
			if s, r = e.open(ctx, &t, j.domain); r != nil {
				last = r
				continue
			}
		}
		for next < len(j.items) {
			ir := j.items[next]
			if ir.lost.Load() {
				next++ // another node holds it now
				continue
			}
			if s.sent >= e.cfg.MaxPerConn {
				// The connection has carried its share: a new one.
				s.quit()
				var r *result
				if s, r = e.open(ctx, &t, j.domain); r != nil {
					last = r
					break
				}
				reused = false
			}
			t0 := time.Now()
			res, err := s.transact(ctx, e.st, &ir.item, j.rcpts[next])
			var ce *errConnection
			if errors.As(err, &ce) {
				if reused && ctx.Err() == nil {
					// A cached connection the receiver has closed
					// meanwhile (an idle timeout, RFC 5321 §4.5.3.2.7):
					// the transaction again on a new one.
					s.close()
					var r *result
					if s, r = e.open(ctx, &t, j.domain); r != nil {
						last = r
						break
					}
					reused = false
					continue
				}
				last = ce.r
				e.log.Info("delivery connection lost", "queue", ir.item.ID, "domain", j.domain, "mx", t.host,
					"remote", t.addr, "code", ce.r.code, "reply", ce.r.reply)
				break
			}
			reused = false
			s.sent++
			ir.set(res)
			for _, r := range res {
				if r.state == mailstore.RcptDelivered {
					e.metrics.bytes.Add(float64(ir.item.Size))
					break
				}
			}
			e.logAttempt(ir, j.domain, t.host, s.tlsVersion, summarize(res), len(res), t0)
			next++ // the next transaction begins with RSET (transact)
		}
		switch {
		case s == nil:
		case next == len(j.items):
			e.conns.put(t, s, e.cfg.Now(), e.cfg.MaxPerConn)
		default:
			s.close()
		}
	}
	for i := next; i < len(j.items); i++ {
		j.items[i].set(allRcpts(j.rcpts[i], last))
		e.logAttempt(j.items[i], j.domain, lastHost, "", last, len(j.rcpts[i]), start)
	}
	e.checkAbort(ctx, j)
}

// open connects to t, again in clear when opportunistic TLS fails (then
// t says so), or returns the result the failure gives the recipients.
func (e *Engine) open(ctx context.Context, t *target, domain string) (*session, *result) {
	s, r, err := dial(ctx, *t, e.cfg.Hostname, e.cfg.RootCAs, e.cfg.SourceAddrs)
	if errors.Is(err, errOpportunisticTLS) {
		// RFC 7435 §3: opportunistic TLS that fails falls back to
		// clear text (an enforce policy never gets here).
		e.log.Info("TLS handshake failed; retrying in clear", "mx", t.host, "remote", t.addr)
		t.noTLS = true
		s, r, _ = dial(ctx, *t, e.cfg.Hostname, e.cfg.RootCAs, e.cfg.SourceAddrs)
	}
	if r != nil {
		e.log.Info("delivery connection failed", "domain", domain, "mx", t.host, "remote", t.addr,
			"code", r.code, "reply", r.reply)
		return nil, r
	}
	if s.tlsVersion != "" {
		e.metrics.connections.WithLabelValues("tls").Inc()
	} else {
		e.metrics.connections.WithLabelValues("plain").Inc()
	}
	if s.tlsFailed != nil {
		e.log.Warn("MTA-STS testing policy: certificate would fail verification", "domain", domain, "mx", t.host, "err", s.tlsFailed)
	}
	return s, nil
}

func (e *Engine) checkAbort(ctx context.Context, j *job) {
	if ctx.Err() == nil {
		return
	}
	for _, ir := range j.items {
		ir.mu.Lock()
		ir.aborted = true
		ir.mu.Unlock()
	}
}

func allRcpts(rcpts []mailstore.QueueRecipient, r *result) map[int64]*result {
	out := make(map[int64]*result, len(rcpts))
	for _, rc := range rcpts {
		out[rc.ID] = r
	}
	return out
}

// summarize picks the result to log for a transaction: the first
// failure, else a delivery.
func summarize(res map[int64]*result) *result {
	var best *result
	for _, r := range res {
		if best == nil || r.state == mailstore.RcptFailed || (r.state == mailstore.RcptPending && best.state == mailstore.RcptDelivered) {
			best = r
		}
	}
	if best == nil {
		return &result{}
	}
	return best
}

// logAttempt writes the line of one attempt of an item at a destination.
func (e *Engine) logAttempt(ir *itemRun, domain, mx, tlsVersion string, r *result, n int, start time.Time) {
	if domain == "" {
		domain = "(relay)"
	}
	if tlsVersion == "" {
		tlsVersion = "none"
	}
	e.log.Info("delivery attempt", "queue", ir.item.ID, "domain", domain, "mx", mx, "tls", tlsVersion,
		"rcpts", n, "result", string(r.state), "code", r.code, "reply", r.reply, "duration", time.Since(start))
}

// targets lists the addresses to try for a destination, each with its TLS
// requirements, or a result for all when there are none.
func (e *Engine) targets(ctx context.Context, domain string) ([]target, *result) {
	if e.cfg.RelayHost != "" {
		return e.relayTargets(ctx)
	}
	var policy *STSPolicy
	if p := e.sts.Policy(ctx, domain); p != nil && p.Mode != STSNone {
		policy = p
	}
	hosts, fail := route(ctx, e.cfg.Resolver, domain)
	if fail != nil {
		return nil, fail
	}
	var out []target
	for _, h := range hosts {
		t := target{host: h.Name}
		if policy != nil {
			// RFC 8461 §4.1, §4.2: only a listed MX, over TLS with a
			// certificate valid for its name. In testing mode, deliver
			// anyway and report (§5).
			match := policy.MatchMX(h.Name)
			if policy.Mode == STSEnforce {
				if !match {
					e.log.Warn("MTA-STS: MX host not in the domain's policy; skipped", "domain", domain, "mx", h.Name)
					continue
				}
				t.requireTLS, t.verifyName = true, h.Name
			} else {
				if !match {
					e.log.Warn("MTA-STS testing policy: MX host not in the policy", "domain", domain, "mx", h.Name)
				}
				t.verifyName, t.reportOnly = h.Name, true
			}
		}
		for _, a := range h.Addrs {
			t.addr = net.JoinHostPort(a.String(), strconv.Itoa(e.cfg.Port))
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, tempResult("4.7.5", "MTA-STS: no MX host of "+domain+" matches its enforced policy")
	}
	return out, nil
}

func (e *Engine) relayTargets(ctx context.Context) ([]target, *result) {
	host, port, _ := net.SplitHostPort(e.cfg.RelayHost)
	t := target{host: host, implicitTLS: port == "465"}
	if e.cfg.RelayUsername != "" {
		t.requireTLS, t.verifyName = true, host
		t.user, t.pass = e.cfg.RelayUsername, e.cfg.RelayPassword
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		var err error
		addrs, err = e.cfg.Resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, tempResult("4.4.3", "DNS lookup of relay "+host+" failed: "+errText(err))
		}
		addrs = interleave(addrs)
		if len(addrs) > maxAddrs {
			addrs = addrs[:maxAddrs]
		}
	}
	var out []target
	for _, a := range addrs {
		t.addr = net.JoinHostPort(a.String(), port)
		out = append(out, t)
	}
	return out, nil
}

// sortedRcpts lists an item's claimed recipients in ID order.
func sortedRcpts(it *mailstore.QueueItem) []mailstore.QueueRecipient {
	out := append([]mailstore.QueueRecipient(nil), it.Recipients...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
