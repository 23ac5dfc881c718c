package zonerecords

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// domainSet is a directory of local domains held in memory; lookups of
// "fail.example" fail as a store outage would.
type domainSet map[string]bool

func (d domainSet) IsLocalDomain(ctx context.Context, name string) (bool, error) {
	if name == "fail.example" {
		return false, errors.New("database down")
	}
	return d[name], nil
}

func TestPolicyText(t *testing.T) {
	p := NewPolicy(ModeEnforce, "MX.Example.org.")
	want := "version: STSv1\r\nmode: enforce\r\nmx: mx.example.org\r\nmax_age: 604800\r\n"
	if p.Text() != want {
		t.Fatalf("policy %q", p.Text())
	}
	id := p.ID()
	if len(id) == 0 || len(id) > 32 || strings.Trim(id, "0123456789abcdef") != "" {
		t.Fatalf("id %q is not 1*32 ALPHA/DIGIT", id)
	}
	if NewPolicy(ModeTesting, "mx.example.org").ID() == id || NewPolicy(ModeEnforce, "mx2.example.org").ID() == id {
		t.Fatal("id does not change with the policy")
	}
	if NewPolicy(ModeEnforce, "mx.example.org").ID() != id {
		t.Fatal("id not stable")
	}
}

func TestPolicyDomain(t *testing.T) {
	for host, want := range map[string]string{
		"mta-sts.example.org":        "example.org",
		"MTA-STS.Example.ORG.":       "example.org",
		"mta-sts.example.org:8080":   "example.org",
		"mta-sts.xn--bcher-kva.test": "xn--bcher-kva.test",
		"example.org":                "",
		"mta-sts.":                   "",
		"mta-sts.org":                "",
		"www.mta-sts.example.org":    "",
		"mta-sts.exa mple.org":       "",
		"mta-sts.-bad.org":           "",
		"mta-sts.example.org:x:y":    "",
		"[::1]:80":                   "",
		"mta-sts.a..b":               "",
		"mta-sts." + strings.Repeat("a", 64) + ".org": "",
	} {
		got, ok := PolicyDomain(host)
		if got != want || ok != (want != "") {
			t.Errorf("PolicyDomain(%q) = %q, %v; want %q", host, got, ok, want)
		}
	}
}

func TestPolicyHandler(t *testing.T) {
	p := NewPolicy(ModeTesting, "mail.example.org")
	srv := httptest.NewServer(PolicyHandler(p, domainSet{"example.org": true}, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	get := func(method, host string) (int, string, http.Header) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+PolicyPath, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	code, body, h := get("GET", "mta-sts.example.org")
	if code != 200 || body != p.Text() || h.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("GET: %d %q %v", code, body, h)
	}
	if code, body, _ := get("HEAD", "mta-sts.example.org:443"); code != 200 || body != "" {
		t.Fatalf("HEAD: %d %q", code, body)
	}
	for _, host := range []string{"mta-sts.other.example", "example.org", "mail.example.org"} {
		if code, _, _ := get("GET", host); code != 404 {
			t.Errorf("host %s: %d, want 404", host, code)
		}
	}
	if code, _, _ := get("GET", "mta-sts.fail.example"); code != 503 {
		t.Errorf("store failure: %d, want 503", code)
	}
}

func FuzzPolicyDomain(f *testing.F) {
	for _, s := range []string{"mta-sts.example.org", "MTA-STS.example.org.:443", "[::1]:80", "mta-sts.", "mta-sts.xn--bcher-kva.test", "a:b:c", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		d, ok := PolicyDomain(host)
		if !ok {
			if d != "" {
				t.Fatalf("%q: domain %q without ok", host, d)
			}
			return
		}
		// What comes out is a plain lower-case domain that names itself.
		if !validDomain(d) || d != strings.ToLower(d) || len(d) > 253 {
			t.Fatalf("%q: bad domain %q", host, d)
		}
		if d2, ok := PolicyDomain("mta-sts." + d); !ok || d2 != d {
			t.Fatalf("%q: %q does not round-trip (%q)", host, d, d2)
		}
	})
}
