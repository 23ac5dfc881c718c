package mailstore

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNormalizeRemoteAddress(t *testing.T) {
	good := []struct{ in, addr, domain string }{
		{"Bob@Remote.EXAMPLE", "Bob@remote.example", "remote.example"},
		{"bob@remote.example.", "bob@remote.example", "remote.example"},
		{"carol@Bücher.example", "carol@xn--bcher-kva.example", "xn--bcher-kva.example"},
		{"jürgen@bücher.example", "jürgen@xn--bcher-kva.example", "xn--bcher-kva.example"},
		{`"dan smith"@remote.example`, `"dan smith"@remote.example`, "remote.example"},
		{`dan smith@remote.example`, `"dan smith"@remote.example`, "remote.example"}, // given unquoted
		{`"erin"@remote.example`, "erin@remote.example", "remote.example"},           // quotes not needed
		{`"a\"b"@remote.example`, `"a\"b"@remote.example`, "remote.example"},
		{`a"b@remote.example`, `"a\"b"@remote.example`, "remote.example"},
		{`"a@b"@remote.example`, `"a@b"@remote.example`, "remote.example"},
		{"user%host!x@remote.example", "user%host!x@remote.example", "remote.example"},
		{"a.b+c@xn--bcher-kva.example", "a.b+c@xn--bcher-kva.example", "xn--bcher-kva.example"},
	}
	for _, g := range good {
		addr, dom, err := NormalizeRemoteAddress(g.in)
		if err != nil || addr != g.addr || dom != g.domain {
			t.Errorf("%q: got %q %q %v; want %q %q", g.in, addr, dom, err, g.addr, g.domain)
		}
	}
	bad := []string{"", "bob", "@remote.example", "bob@", "bob@[192.0.2.1]", "bob@[IPv6:::1]", "bob@-x.example",
		"bob@x..example", "bob@exa_mple.org", "a\x00b@remote.example", "a\tb@remote.example", "a\x7fb@remote.example",
		"\xff@remote.example", `""@remote.example`, strings.Repeat("x", 65) + "@remote.example",
		`"` + strings.Repeat("x", 62) + ` "@remote.example`, "bob@" + strings.Repeat("a", 64) + ".example",
		"bob@bad\u00a0space.example", strings.Repeat("a", 60) + "@" + strings.Repeat("b.", 96) + "example"}
	for _, in := range bad {
		if addr, dom, err := NormalizeRemoteAddress(in); !errors.Is(err, ErrInvalidAddress) {
			t.Errorf("%q: got %q %q %v; want ErrInvalidAddress", in, addr, dom, err)
		}
	}
}

func FuzzNormalizeRemoteAddress(f *testing.F) {
	for _, s := range []string{"bob@remote.example", "Bob@Bücher.example", `"a b"@x.example`, `a"b@x`, `"\"@x`,
		"a@[1.2.3.4]", "user%host@x.example", "jürgen@例え.テスト", `"a\\b"@x.y`, "a..b@x.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		addr, dom, err := NormalizeRemoteAddress(s)
		if err != nil {
			return
		}
		// The normal form is stable, bounded, sendable and ends in its
		// lower-case ASCII domain.
		again, dom2, err := NormalizeRemoteAddress(addr)
		if err != nil || again != addr || dom2 != dom {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", s, addr, again, err)
		}
		if len(addr) > MaxAddressLength || !utf8.ValidString(addr) || !strings.HasSuffix(addr, "@"+dom) {
			t.Fatalf("bad normal form %q (domain %q)", addr, dom)
		}
		if d, err := NormalizeDomain(dom); err != nil || d != dom {
			t.Fatalf("domain %q is not normal: %q, %v", dom, d, err)
		}
		local := strings.TrimSuffix(addr, "@"+dom)
		if len(local) > MaxLocalPartLength || strings.ContainsAny(local, "\x00\r\n\t") {
			t.Fatalf("bad local part %q", local)
		}
		if !isDotString(local) {
			if _, ok := unquoteLocal(local); !ok {
				t.Fatalf("local part %q is neither a dot-string nor a quoted string", local)
			}
		}
	})
}
