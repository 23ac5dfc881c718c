package mailauth_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/dnsr"
	"github.com/postrider/postrider/mailauth"
	"github.com/postrider/postrider/mailauth/mailauthtest"
)

var client = netip.MustParseAddr("127.0.0.10")

// newChecker returns a checker that asks d.
func newChecker(d *mailauthtest.DNS) *mailauth.Checker {
	return &mailauth.Checker{Resolver: d.Resolver()}
}

func TestSPF(t *testing.T) {
	t.Parallel()
	d := mailauthtest.NewDNS(t)
	d.TXT("pass.test", "v=spf1 ip4:127.0.0.10 -all")
	d.TXT("fail.test", "v=spf1 ip4:127.0.0.99 -all")
	d.TXT("soft.test", "v=spf1 ip4:127.0.0.99 ~all")
	d.TXT("neutral.test", "v=spf1 ?all")
	d.TXT("nospf.test", "google-site-verification=abc")
	d.TXT("cidr.test", "v=spf1 ip4:127.0.0.0/24 ip6:2001:db8::/32 -all")
	d.ServFail("servfail.test")
	d.TXT("two.test", "v=spf1 -all", "v=spf1 +all")
	d.TXT("syntax.test", "v=spf1 frobnicate:x -all")
	d.TXT("badip.test", "v=spf1 ip4:300.1.1.1 -all")
	// include and redirect (RFC 7208 §5.2, §6.1)
	d.TXT("inc.test", "v=spf1 include:_spf.inc.test -all")
	d.TXT("_spf.inc.test", "v=spf1 ip4:127.0.0.10 -all")
	d.TXT("incfail.test", "v=spf1 include:_spf.incfail.test ~all")
	d.TXT("_spf.incfail.test", "v=spf1 ip4:127.0.0.99 -all") // an include that fails does not match
	d.TXT("incnone.test", "v=spf1 include:missing.incnone.test -all")
	d.TXT("inctemp.test", "v=spf1 include:_spf.inctemp.test -all")
	d.ServFail("_spf.inctemp.test")
	d.TXT("red.test", "v=spf1 redirect=_spf.red.test")
	d.TXT("_spf.red.test", "v=spf1 ip4:127.0.0.10 -all")
	d.TXT("rednone.test", "v=spf1 redirect=missing.rednone.test")
	// a, mx
	d.TXT("a.test", "v=spf1 a -all")
	d.IP("a.test", "127.0.0.10")
	d.TXT("mx.test", "v=spf1 mx -all")
	d.MX("mx.test", "mail.mx.test", 10)
	d.IP("mail.mx.test", "127.0.0.10", "::1")
	// The 10-lookup limit (RFC 7208 §4.6.4): ten a: mechanisms that do not
	// match, then the matching ip4: — and eleven.
	var ten, eleven []string
	for i := range 11 {
		h := fmt.Sprintf("h%d.lim.test", i)
		d.IP(h, "127.0.1.1")
		if i < 10 {
			ten = append(ten, "a:"+h)
		}
		eleven = append(eleven, "a:"+h)
	}
	d.TXT("ten.test", "v=spf1 "+strings.Join(ten, " ")+" ip4:127.0.0.10 -all")
	d.TXT("eleven.test", "v=spf1 "+strings.Join(eleven, " ")+" ip4:127.0.0.10 -all")
	// An include chain of 11 levels.
	for i := range 11 {
		d.TXT(fmt.Sprintf("c%d.chain.test", i), fmt.Sprintf("v=spf1 include:c%d.chain.test -all", i+1))
	}
	d.TXT("c11.chain.test", "v=spf1 ip4:127.0.0.10 -all")
	// Void lookups (RFC 7208 §4.6.4): at most 2.
	d.TXT("void.test", "v=spf1 a:v1.void.test a:v2.void.test a:v3.void.test ip4:127.0.0.10 -all")
	d.TXT("void2.test", "v=spf1 a:v1.void.test a:v2.void.test ip4:127.0.0.10 -all")
	d.TXT("xn--bcher-kva.test", "v=spf1 ip4:127.0.0.10 -all")
	d.TXT("helo.test", "v=spf1 ip4:127.0.0.10 -all")

	cases := []struct {
		name, helo, from string
		ip               netip.Addr
		want, identity   string
		domain           string
	}{
		{"pass", "h.example", "a@pass.test", client, "pass", "mailfrom", "pass.test"},
		{"pass case", "h.example", "a@PASS.Test", client, "pass", "mailfrom", "pass.test"},
		{"fail", "h.example", "a@fail.test", client, "fail", "mailfrom", "fail.test"},
		{"softfail", "h.example", "a@soft.test", client, "softfail", "mailfrom", "soft.test"},
		{"neutral", "h.example", "a@neutral.test", client, "neutral", "mailfrom", "neutral.test"},
		{"none: no record", "h.example", "a@nospf.test", client, "none", "mailfrom", "nospf.test"},
		{"none: nxdomain", "h.example", "a@nxdomain.test", client, "none", "mailfrom", "nxdomain.test"},
		{"none: single label", "h.example", "a@localhost", client, "none", "mailfrom", ""},
		{"none: unknown client", "h.example", "a@pass.test", netip.Addr{}, "none", "mailfrom", "pass.test"},
		{"cidr", "h.example", "a@cidr.test", client, "pass", "mailfrom", "cidr.test"},
		{"cidr v6", "h.example", "a@cidr.test", netip.MustParseAddr("2001:db8::5"), "pass", "mailfrom", "cidr.test"},
		{"temperror", "h.example", "a@servfail.test", client, "temperror", "mailfrom", "servfail.test"},
		{"permerror: two records", "h.example", "a@two.test", client, "permerror", "mailfrom", "two.test"},
		{"permerror: syntax", "h.example", "a@syntax.test", client, "permerror", "mailfrom", "syntax.test"},
		{"permerror: bad ip4", "h.example", "a@badip.test", client, "permerror", "mailfrom", "badip.test"},
		{"include pass", "h.example", "a@inc.test", client, "pass", "mailfrom", "inc.test"},
		{"include no match", "h.example", "a@incfail.test", client, "softfail", "mailfrom", "incfail.test"},
		{"include of nothing", "h.example", "a@incnone.test", client, "permerror", "mailfrom", "incnone.test"},
		{"include temperror", "h.example", "a@inctemp.test", client, "temperror", "mailfrom", "inctemp.test"},
		{"redirect", "h.example", "a@red.test", client, "pass", "mailfrom", "red.test"},
		{"redirect fail", "h.example", "a@red.test", netip.MustParseAddr("127.0.0.11"), "fail", "mailfrom", "red.test"},
		{"redirect to nothing", "h.example", "a@rednone.test", client, "permerror", "mailfrom", "rednone.test"},
		{"a", "h.example", "a@a.test", client, "pass", "mailfrom", "a.test"},
		{"mx", "h.example", "a@mx.test", client, "pass", "mailfrom", "mx.test"},
		{"mx v6", "h.example", "a@mx.test", netip.MustParseAddr("::1"), "pass", "mailfrom", "mx.test"},
		{"ten lookups", "h.example", "a@ten.test", client, "pass", "mailfrom", "ten.test"},
		{"eleven lookups", "h.example", "a@eleven.test", client, "permerror", "mailfrom", "eleven.test"},
		{"include chain over 10", "h.example", "a@c0.chain.test", client, "permerror", "mailfrom", "c0.chain.test"},
		{"include chain of 10", "h.example", "a@c1.chain.test", client, "pass", "mailfrom", "c1.chain.test"},
		{"three void lookups", "h.example", "a@void.test", client, "permerror", "mailfrom", "void.test"},
		{"two void lookups", "h.example", "a@void2.test", client, "pass", "mailfrom", "void2.test"},
		{"null path: helo", "helo.test", "", client, "pass", "helo", "helo.test"},
		{"null path: helo literal", "[127.0.0.10]", "", client, "none", "helo", ""},
		{"idn", "h.example", "a@bücher.test", client, "pass", "mailfrom", "xn--bcher-kva.test"},
	}
	c := newChecker(d)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := c.SPF(context.Background(), tc.ip, tc.helo, tc.from)
			if r.Result != tc.want || r.Identity != tc.identity || r.Domain != tc.domain {
				t.Errorf("SPF(%s, %q, %q) = %+v, want %s identity %s domain %q", tc.ip, tc.helo, tc.from, r, tc.want, tc.identity, tc.domain)
			}
		})
	}
}

// TestSPFOutage: a server that is gone, or that never answers (bounded by
// SPFTimeout), gives temperror, never none or permerror.
func TestSPFOutage(t *testing.T) {
	t.Parallel()
	d := mailauthtest.NewDNS(t)
	d.TXT("pass.test", "v=spf1 ip4:127.0.0.10 -all")
	c := newChecker(d)
	d.Down(true)
	if r := c.SPF(context.Background(), client, "h.example", "a@pass.test"); r.Result != "temperror" {
		t.Errorf("server failing: %+v, want temperror", r)
	}
	c = &mailauth.Checker{Resolver: mailauthtest.GoneResolver(t)}
	if r := c.SPF(context.Background(), client, "h.example", "a@pass.test"); r.Result != "temperror" {
		t.Errorf("server gone: %+v, want temperror", r)
	}

	// A server that reads queries and never answers.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 512)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	r, err := dnsr.New(pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	c = &mailauth.Checker{Resolver: r, SPFTimeout: 300 * time.Millisecond}
	if res := c.SPF(context.Background(), client, "h.example", "a@pass.test"); res.Result != "temperror" {
		t.Errorf("silent server: %+v, want temperror", res)
	}
}
