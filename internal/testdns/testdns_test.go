package testdns_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/postrider/postrider/internal/dnsr"
	"github.com/postrider/postrider/internal/testdns"
)

func TestServerThroughDnsr(t *testing.T) {
	long := strings.Repeat("k", 400) // an RSA-2048 DKIM key is about this long
	s := testdns.Start(t,
		"example.test. 300 IN MX 20 mx2.example.test.",
		"example.test. 300 IN MX 10 mx1.example.test.",
		"mx1.example.test. 300 IN A 127.0.0.2",
		"mx1.example.test. 300 IN AAAA ::1",
		`example.test. 300 IN TXT "v=spf1 ip4:127.0.0.2 -all"`,
		`sel._domainkey.example.test. 300 IN TXT "v=DKIM1; k=rsa; p=`+long[:200]+`" "`+long[200:]+`"`,
		"nullmx.test. 300 IN MX 0 .",
	)
	r, err := dnsr.New(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	mxs, err := r.LookupMX(ctx, "example.test")
	if err != nil || len(mxs) != 2 || mxs[0].Host != "mx1.example.test." || mxs[0].Pref != 10 {
		t.Fatalf("MX: %v %v", mxs, err)
	}
	ips, err := r.LookupNetIP(ctx, "ip", "mx1.example.test")
	if err != nil || len(ips) != 2 {
		t.Fatalf("A/AAAA: %v %v", ips, err)
	}
	txt, err := r.LookupTXT(ctx, "sel._domainkey.example.test")
	if err != nil || len(txt) != 1 || !strings.HasSuffix(txt[0], long) {
		t.Fatalf("long TXT (over TCP after truncation): %d records, %v", len(txt), err)
	}
	if mx, err := r.LookupMX(ctx, "nullmx.test"); err != nil || len(mx) != 1 || mx[0].Host != "." {
		t.Fatalf("null MX: %v %v", mx, err)
	}

	// No such name, and a name with no record of the type asked: both
	// permanent. The empty non-terminal _domainkey.example.test exists.
	for _, name := range []string{"nosuch.example.test", "mx1.example.test", "_domainkey.example.test"} {
		_, err := r.LookupTXT(ctx, name)
		if !dnsr.NotFound(err) || dnsr.Temporary(err) {
			t.Errorf("TXT %s: %v: want a permanent not-found", name, err)
		}
	}
	// SERVFAIL for one name, then for everything: temporary.
	s.Fail("example.test", true)
	if _, err := r.LookupMX(ctx, "example.test"); !dnsr.Temporary(err) || dnsr.NotFound(err) {
		t.Errorf("SERVFAIL: %v: want temporary", err)
	}
	s.Fail("example.test", false)
	s.Down(true)
	if _, err := r.LookupTXT(ctx, "example.test"); !dnsr.Temporary(err) {
		t.Errorf("outage: %v: want temporary", err)
	}
	s.Down(false)
	if _, err := r.LookupTXT(ctx, "example.test"); err != nil {
		t.Errorf("after the outage: %v", err)
	}
	if n := s.Queries("example.test", dns.TypeMX); n < 2 {
		t.Errorf("MX queries counted: %d", n)
	}

	// An unreachable resolver is a temporary failure too.
	dead, _ := dnsr.New("127.0.0.1:1")
	if _, err := dead.LookupMX(ctx, "example.test"); !dnsr.Temporary(err) {
		t.Errorf("dead resolver: %v: want temporary", err)
	}
	if _, err := dnsr.New("no-port"); err == nil {
		t.Error("dnsr.New accepted a server without a port")
	}
}
