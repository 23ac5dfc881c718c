package main_test

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/smtp"
	"net/textproto"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/pgtest"
)

// scrape returns a node's /metrics as series ("name{labels}") -> value.
func scrape(t *testing.T, n *node) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + n.addrs["HTTP"] + "/metrics")
	must(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	must(t, err)
	out := map[string]float64{}
	for _, l := range strings.Split(string(body), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", l, err)
		}
		out[l[:i]] = v
	}
	return out
}

// sampleNames are the sample names of a scrape (histograms' _bucket,
// _sum and _count included).
func sampleNames(m map[string]float64) map[string]bool {
	names := map[string]bool{}
	for s := range m {
		name, _, _ := strings.Cut(s, "{")
		names[name] = true
	}
	return names
}

var (
	promStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promRanges   = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdents   = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	// promFuncs are the PromQL functions and operators the dashboard may
	// use; any other identifier in an expression is a metric name.
	promFuncs = map[string]bool{"sum": true, "rate": true, "irate": true, "increase": true, "histogram_quantile": true,
		"topk": true, "max": true, "min": true, "avg": true, "count": true, "clamp_min": true, "and": true, "or": true, "unless": true}
)

// dashboardMetrics returns every metric name the PromQL expressions of a
// Grafana dashboard use, and the number of expressions.
func dashboardMetrics(t *testing.T, path string) (map[string]bool, int) {
	t.Helper()
	raw, err := os.ReadFile(path)
	must(t, err)
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	names := map[string]bool{}
	exprs := 0
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs++
			e := promStrings.ReplaceAllString(tg.Expr, "")
			e = promMatchers.ReplaceAllString(e, "")
			e = promRanges.ReplaceAllString(e, "")
			e = promGrouping.ReplaceAllString(e, "")
			found := false
			for _, id := range promIdents.FindAllString(e, -1) {
				if !promFuncs[id] {
					names[id] = true
					found = true
				}
			}
			if !found {
				t.Errorf("panel %q: no metric in %q", p.Title, tg.Expr)
			}
		}
	}
	return names, exprs
}

// TestDashboardUsesServedMetrics: every metric the Grafana dashboard
// queries is served by a running node's /metrics once SMTP, IMAP and POP3
// have each had a session; the login counters count failures; the store's
// query latency, connections and notification lag (from another node's
// delivery) have samples.
func TestDashboardUsesServedMetrics(t *testing.T) {
	want, exprs := dashboardMetrics(t, "../../deploy/grafana/postrider.json")
	if exprs < 10 || !want["postrider_notify_lag_seconds_bucket"] || !want["postrider_store_listener_reconnects_total"] {
		t.Fatalf("dashboard: %d expressions over %v", exprs, want)
	}

	url := pgtest.NewDatabase(t)
	if r := runCLI(t, []string{"POSTRIDER_DATABASE_URL=" + url}, "", "domain", "add", "example.org"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if r := runCLI(t, []string{"POSTRIDER_DATABASE_URL=" + url}, "pw-dash-1\n", "user", "add", "d@example.org"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if r := runCLI(t, []string{"POSTRIDER_DATABASE_URL=" + url}, "", "alias", "add", "fwd@example.org", "someone@remote.test"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	a, b := startNode(t, url), startNode(t, url)
	c, err := smtp.Dial(a.addrs["SMTP"])
	must(t, err)
	must(t, c.Hello("client.test"))
	must(t, c.Mail("x@remote.test"))
	must(t, c.Rcpt("d@example.org"))
	w, err := c.Data()
	must(t, err)
	fmt.Fprint(w, "Subject: d\r\n\r\nd\r\n")
	must(t, w.Close())
	must(t, c.Quit())
	// A forward to a remote address is queued; a message with a bare CR
	// is refused.
	c, err = smtp.Dial(a.addrs["SMTP"])
	must(t, err)
	must(t, c.Hello("client.test"))
	must(t, c.Mail("x@remote.test"))
	must(t, c.Rcpt("fwd@example.org"))
	w, err = c.Data()
	must(t, err)
	fmt.Fprint(w, "Subject: f\r\n\r\nf\r\n")
	must(t, w.Close())
	must(t, c.Quit())
	tc, err := textproto.Dial("tcp", a.addrs["SMTP"])
	must(t, err)
	defer tc.Close()
	_, _, err = tc.ReadResponse(220)
	must(t, err)
	for _, cmd := range []struct {
		line string
		code int
	}{{"EHLO client.test", 250}, {"MAIL FROM:<x@remote.test>", 250}, {"RCPT TO:<d@example.org>", 250}, {"DATA", 354}} {
		must(t, tc.PrintfLine("%s", cmd.line))
		_, _, err = tc.ReadResponse(cmd.code)
		must(t, err)
	}
	must(t, tc.PrintfLine("Subject: r\r\n\r\nbare\rCR\r\n."))
	if _, _, err = tc.ReadResponse(250); err == nil {
		t.Fatal("a message with a bare CR was accepted")
	}
	dialog(t, a.addrs["IMAP"], []string{"a LOGIN d@example.org pw-dash-1", "b SELECT INBOX", "c FETCH 1 (BODY[])", "d LOGOUT"}, "d OK")
	dialog(t, a.addrs["POP3"], []string{"USER d@example.org", "PASS pw-dash-1", "RETR 1", "QUIT"}, "+OK")

	before := scrape(t, a)
	have := sampleNames(before)
	var missing []string
	for m := range want {
		if !have[m] {
			missing = append(missing, m)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the dashboard queries metrics /metrics does not serve: %v", missing)
	}

	// A failed login counts as one, in each protocol.
	dialog(t, a.addrs["IMAP"], []string{"a LOGIN d@example.org wrong-password", "b LOGOUT"}, "b OK")
	dialog(t, a.addrs["POP3"], []string{"USER d@example.org", "PASS wrong-password", "QUIT"}, "+OK")
	after := scrape(t, a)
	for _, s := range []string{`postrider_auth_total{proto="imap",result="failed"}`, `postrider_auth_total{proto="pop3",result="failed"}`} {
		if after[s] != before[s]+1 {
			t.Errorf("%s: %v before a failed login, %v after", s, before[s], after[s])
		}
	}
	for _, s := range []string{`postrider_auth_total{proto="imap",result="ok"}`, `postrider_auth_total{proto="pop3",result="ok"}`} {
		if after[s] != 1 {
			t.Errorf("%s = %v after one successful login", s, after[s])
		}
	}
	if q := `postrider_store_query_duration_seconds_count{kind="query",result="ok"}`; after[q] <= before[q] {
		t.Errorf("%s: %v before two logins, %v after", q, before[q], after[q])
	}
	if o := after["postrider_store_connections_opened_total"]; o < 1 {
		t.Errorf("postrider_store_connections_opened_total = %v", o)
	}
	if r := after["postrider_store_listener_reconnects_total"]; r != 0 {
		t.Errorf("postrider_store_listener_reconnects_total = %v with the database up all along", r)
	}

	// An IMAP connection that starts TLS counts as an open TLS connection
	// from then on, and as none once closed.
	open := func(tls string) float64 {
		return scrape(t, a)[`postrider_connections_open{proto="imap",tls="`+tls+`"}`]
	}
	nc, err := net.DialTimeout("tcp", a.addrs["IMAP"], 5*time.Second)
	must(t, err)
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(nc)
	_, err = br.ReadString('\n')
	must(t, err)
	if o := open("no"); o != 1 {
		t.Errorf("plain IMAP connections open: %v, want 1", o)
	}
	fmt.Fprint(nc, "a STARTTLS\r\n")
	if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, "a OK") {
		t.Fatalf("STARTTLS: %q %v", l, err)
	}
	sc := tls.Client(nc, &tls.Config{InsecureSkipVerify: true})
	must(t, sc.Handshake())
	fmt.Fprint(sc, "b NOOP\r\n")
	tr := bufio.NewReader(sc)
	if l, err := tr.ReadString('\n'); err != nil || !strings.HasPrefix(l, "b OK") {
		t.Fatalf("NOOP over TLS: %q %v", l, err)
	}
	if y, n := open("yes"), open("no"); y != 1 || n != 0 {
		t.Errorf("after STARTTLS: %v TLS and %v plain IMAP connections open, want 1 and 0", y, n)
	}
	sc.Close()
	for deadline := time.Now().Add(5 * time.Second); open("yes") != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("a closed TLS connection still counts as open: %v", open("yes"))
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Node b heard node a's writes, with their lag.
	deadline := time.Now().Add(10 * time.Second)
	for scrape(t, b)["postrider_notify_lag_seconds_count"] < 1 {
		if time.Now().After(deadline) {
			t.Fatal("node b measured no notification lag from node a's writes")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if t.Failed() {
		for s, v := range after {
			if strings.HasPrefix(s, "postrider_") && !strings.Contains(s, "_bucket{") {
				t.Logf("node a: %s %v", s, v)
			}
		}
	}
}
