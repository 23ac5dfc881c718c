package mailstore

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNormalizeAddress(t *testing.T) {
	good := map[string]string{
		"Alice@Example.ORG":       "alice@example.org",
		"a.b-c+tag@example.org.":  "a.b-c+tag@example.org",
		"o'neil@sub.example.test": "o'neil@sub.example.test",
	}
	for in, want := range good {
		got, err := NormalizeAddress(in)
		if err != nil || got != want {
			t.Errorf("%q: got %q, %v; want %q", in, got, err, want)
		}
	}
	bad := []string{"", "@example.org", "alice@", "alice", "a..b@example.org", ".a@example.org", "a.@example.org",
		`"quoted"@example.org`, "user%other@example.org", "a!b@example.org", "a b@example.org", "a@exa_mple.org",
		"a@-example.org", "a@example..org", strings.Repeat("a", 65) + "@example.org", "a@" + strings.Repeat("b", 250) + ".org",
		"a@[127.0.0.1]", "a@b@example.org", "\xff@example.org"}
	for _, in := range bad {
		if got, err := NormalizeAddress(in); !errors.Is(err, ErrInvalidAddress) {
			t.Errorf("%q: got %q, %v; want ErrInvalidAddress", in, got, err)
		}
	}
	if got, err := NormalizeAliasAddress("@Example.org"); err != nil || got != "@example.org" {
		t.Errorf("catch-all: %q %v", got, err)
	}
}

func TestNormalizeMailboxName(t *testing.T) {
	good := map[string]string{
		"inbox":         "INBOX",
		"InBoX/Sub":     "INBOX/Sub",
		"Archive/2026":  "Archive/2026",
		"Entwürfe":      "Entwürfe",
		"Inboxes":       "Inboxes",
		"a b/c d":       "a b/c d",
		"[Gmail]/Trash": "[Gmail]/Trash",
	}
	for in, want := range good {
		got, err := NormalizeMailboxName(in)
		if err != nil || got != want {
			t.Errorf("%q: got %q, %v; want %q", in, got, err, want)
		}
	}
	bad := []string{"", "/", "a//b", "/a", "a/", "a/../b", "..", ".", "a\x00b", "a\rb", "\xff\xfe", "a*", "b%",
		" lead", "trail ", strings.Repeat("x", MaxMailboxNameLength+1), strings.Repeat("a/", MaxMailboxDepth) + "a"}
	for _, in := range bad {
		if got, err := NormalizeMailboxName(in); !errors.Is(err, ErrInvalidName) {
			t.Errorf("%q: got %q, %v; want ErrInvalidName", in, got, err)
		}
	}
}

func TestValidKeyword(t *testing.T) {
	for _, k := range []string{"$Forwarded", "$Junk", "NonJunk", "work-item_1"} {
		if !ValidKeyword(k) {
			t.Errorf("%q rejected", k)
		}
	}
	for _, k := range []string{"", `\Seen`, "a b", "a(b", "a]", "é", strings.Repeat("k", MaxKeywordLength+1)} {
		if ValidKeyword(k) {
			t.Errorf("%q accepted", k)
		}
	}
}

func TestUIDSet(t *testing.T) {
	s := UIDs(1, 2, 3, 7, 9, 10)
	if len(s) != 3 || s[0] != (UIDRange{1, 3}) || s[1] != (UIDRange{7, 7}) || s[2] != (UIDRange{9, 10}) {
		t.Fatalf("UIDs = %v", s)
	}
	for _, u := range []uint32{1, 3, 7, 10} {
		if !s.Contains(u) {
			t.Errorf("%d not contained", u)
		}
	}
	for _, u := range []uint32{0, 4, 8, 11} {
		if s.Contains(u) {
			t.Errorf("%d contained", u)
		}
	}
	if !(UIDSet{{5, 0}}).Contains(1 << 31) {
		t.Error("open range")
	}
}

func FuzzNormalizeAddress(f *testing.F) {
	for _, s := range []string{"alice@example.org", "User+Tag@Example.ORG.", `"q"@x`, "a%b@c", "@ours:user@other", "a@[1.2.3.4]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := NormalizeAddress(s)
		if err != nil {
			return
		}
		// Normal form is stable, bounded and free of routing tricks.
		if again, err := NormalizeAddress(n); err != nil || again != n {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", s, n, again, err)
		}
		if len(n) > MaxAddressLength || strings.Count(n, "@") != 1 || strings.ContainsAny(n, "%!\" :[]") {
			t.Fatalf("bad normal form %q", n)
		}
	})
}

func FuzzNormalizeMailboxName(f *testing.F) {
	for _, s := range []string{"INBOX", "inbox/x", "a/b/c", "Entwürfe", "../x", "~user/INBOX", "#shared/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := NormalizeMailboxName(s)
		if err != nil {
			return
		}
		if again, err := NormalizeMailboxName(n); err != nil || again != n {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", s, n, again, err)
		}
		if !utf8.ValidString(n) || len(n) > MaxMailboxNameLength {
			t.Fatalf("bad normal form %q", n)
		}
		for _, l := range strings.Split(n, HierarchyDelimiter) {
			if l == "" || l == ".." || l == "." {
				t.Fatalf("bad level in %q", n)
			}
		}
	})
}
