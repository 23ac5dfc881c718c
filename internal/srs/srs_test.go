package srs

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var testKey = []byte("0123456789abcdef-test-key")

func newTest(t testing.TB, now time.Time) *Rewriter {
	t.Helper()
	r, err := New(testKey, 0)
	if err != nil {
		t.Fatal(err)
	}
	r.SetClock(func() time.Time { return now })
	return r
}

func local(addr string) string { return addr[:strings.LastIndexByte(addr, '@')] }

func TestRoundTrip(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	r := newTest(t, now)
	for _, sender := range []string{
		"alice@remote.example",
		"Alice.Smith+tag@Remote.Example",
		"a=b=c@remote.example", // "=" in the local part
		"x@xn--bcher-kva.example",
	} {
		got, err := r.Forward(sender, "Fwd.Example")
		if err != nil {
			t.Fatalf("Forward(%q): %v", sender, err)
		}
		if !strings.HasPrefix(got, "SRS0=") || !strings.HasSuffix(got, "@fwd.example") {
			t.Errorf("Forward(%q) = %q", sender, got)
		}
		back, err := r.Reverse(local(got))
		want := sender[:strings.LastIndexByte(sender, '@')] + "@" + strings.ToLower(sender[strings.LastIndexByte(sender, '@')+1:])
		if err != nil || back != want {
			t.Errorf("Reverse(%q) = %q, %v; want %q", got, back, err, want)
		}
		// Mail systems may change the case of the local part.
		for _, l := range []string{strings.ToLower(local(got)), strings.ToUpper(local(got))} {
			back, err := r.Reverse(l)
			if err != nil || !strings.EqualFold(back, want) {
				t.Errorf("Reverse(%q) = %q, %v; want %q", l, back, err, want)
			}
		}
	}
	if got, err := r.Forward("", "fwd.example"); got != "" || err != nil {
		t.Errorf("null sender rewritten to %q, %v", got, err)
	}
}

// An address already rewritten by another forwarder becomes SRS1, which
// reverses to that forwarder's SRS0 address; an SRS1 sender keeps its
// first forwarder.
func TestSRS1(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	first, err := New([]byte("another-forwarder-key-0000"), 0)
	if err != nil {
		t.Fatal(err)
	}
	first.SetClock(func() time.Time { return now })
	srs0, err := first.Forward("alice@origin.example", "first.example")
	if err != nil {
		t.Fatal(err)
	}
	r := newTest(t, now)
	srs1, err := r.Forward(srs0, "us.example")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(srs1, "SRS1=") || !strings.Contains(srs1, "=first.example==") || !strings.HasSuffix(srs1, "@us.example") {
		t.Fatalf("SRS1 = %q", srs1)
	}
	back, err := r.Reverse(local(srs1))
	if err != nil || back != srs0 {
		t.Fatalf("Reverse(%q) = %q, %v; want %q", srs1, back, err, srs0)
	}
	// The first forwarder reverses its own address.
	if orig, err := first.Reverse(local(back)); err != nil || orig != "alice@origin.example" {
		t.Fatalf("first forwarder: %q, %v", orig, err)
	}
	// A third forwarder keeps the first one's domain.
	third := newTest(t, now)
	third.key = []byte("third-forwarder-key-000000")
	again, err := third.Forward(srs1, "third.example")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(again, "SRS1=") || !strings.Contains(again, "=first.example==") {
		t.Fatalf("SRS1 of SRS1 = %q", again)
	}
	if back, err := third.Reverse(local(again)); err != nil || back != srs0 {
		t.Fatalf("Reverse(%q) = %q, %v; want %q", again, back, err, srs0)
	}
}

func TestReverseRefuses(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	r := newTest(t, now)
	good, _ := r.Forward("alice@remote.example", "fwd.example")
	gl := local(good)
	parts := strings.SplitN(gl, "=", 5)
	forged := "SRS0=AAAAAAAA=" + parts[2] + "=remote.example=alice"
	retarget := strings.Join([]string{parts[0], parts[1], parts[2], "evil.example", parts[4]}, "=")
	other, _ := New([]byte("some-other-key-0123456789"), 0)
	other.SetClock(r.now)
	foreign, _ := other.Forward("alice@remote.example", "fwd.example")
	cases := []struct {
		local string
		want  error
	}{
		{"alice", ErrNotSRS},
		{"SRS2=x=y", ErrNotSRS},
		{"SRS0=", ErrNotSRS},
		{"SRS0=abc", ErrSyntax},
		{"SRS0=HHHHHHHH=TT=dom", ErrSyntax},
		{"SRS0=HHHHHHHH=T=remote.example=alice", ErrSyntax},
		{"SRS0=HHHHHHHH=T1=remote.example=alice", ErrSyntax},
		{"SRS0=HHHHHHHH=AA=remote.example=", ErrSyntax},
		{"SRS0=HHHHHHHH=AA=[1.2.3.4]=alice", ErrSyntax},
		{"SRS1=HHHHHHHH=first.example=x", ErrSyntax},
		{"SRS1=HHHHHHHH===x", ErrSyntax},
		{"SRS1=HHHHHHHH=first.example==x", ErrBadHash},
		{forged, ErrBadHash},
		{retarget, ErrBadHash},
		{local(foreign), ErrBadHash},
		{strings.Repeat("SRS0=", 60), ErrSyntax},
	}
	for _, c := range cases {
		if _, err := r.Reverse(c.local); !errors.Is(err, c.want) {
			t.Errorf("Reverse(%q) = %v, want %v", c.local, err, c.want)
		}
	}
	if _, err := r.Reverse(gl); err != nil {
		t.Fatalf("the good one: %v", err)
	}
}

func TestExpiry(t *testing.T) {
	day0 := time.Date(2026, 12, 7, 23, 59, 0, 0, time.UTC)
	r := newTest(t, day0)
	addr, _ := r.Forward("alice@remote.example", "fwd.example")
	for _, c := range []struct {
		after time.Duration
		ok    bool
	}{
		{0, true},
		{time.Hour, true},
		{21 * 24 * time.Hour, true},
		{22 * 24 * time.Hour, false},
		{500 * 24 * time.Hour, false},
		{1023 * 24 * time.Hour, false}, // wraps to "yesterday's future"
		{1024 * 24 * time.Hour, true},  // the period: indistinguishable, and hashes still match
		{-24 * time.Hour, false},       // from the future
	} {
		r.SetClock(func() time.Time { return day0.Add(c.after) })
		_, err := r.Reverse(local(addr))
		if (err == nil) != c.ok || err != nil && !errors.Is(err, ErrExpired) {
			t.Errorf("after %v: %v, want ok=%v", c.after, err, c.ok)
		}
	}
}

func TestForwardLimits(t *testing.T) {
	r := newTest(t, time.Now())
	if _, err := r.Forward("x@"+strings.Repeat("a", 63)+"."+strings.Repeat("b", 63)+"."+strings.Repeat("c", 63)+".example",
		strings.Repeat("d", 63)+".example"); !errors.Is(err, ErrTooLong) {
		t.Errorf("long result: %v", err)
	}
	for _, s := range []string{"nodomain", "x@", "@x.example", "x@[127.0.0.1]", "x@bad_domain.example"} {
		if _, err := r.Forward(s, "fwd.example"); !errors.Is(err, ErrNoDomain) {
			t.Errorf("Forward(%q) = %v", s, err)
		}
	}
	if _, err := New([]byte("short"), 0); err == nil {
		t.Error("short key accepted")
	}
}

// FuzzReverse: Reverse never panics, and anything it accepts is a
// local@domain whose domain is a valid one; for SRS0 results, forwarding
// and reversing again gives the same address.
func FuzzReverse(f *testing.F) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	r := newTest(f, now)
	good, _ := r.Forward("alice@remote.example", "fwd.example")
	srs1, _ := r.Forward("SRS0=abcd=AB=origin.example=bob@first.example", "fwd.example")
	for _, s := range []string{local(good), local(srs1), "SRS0=HHHH=TT=d.example=l", "SRS1=H=d==x", "srs0=", "SRS0====", "SRS1=a=b=c=d=e", "alice"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := r.Reverse(s)
		if err != nil {
			return
		}
		at := strings.LastIndexByte(out, '@')
		if at <= 0 || !validDomain(out[at+1:]) {
			t.Fatalf("Reverse(%q) = %q", s, out)
		}
	})
}

// FuzzRoundTrip: whatever sender is forwarded reverses to itself (domain
// in lower case).
func FuzzRoundTrip(f *testing.F) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	r := newTest(f, now)
	for _, s := range []string{"alice@remote.example", "a=b@x.example", "SRS0=h=TT=d.example=l@f.example", "SRS1=h=f.example==x@g.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sender string) {
		fw, err := r.Forward(sender, "us.example")
		if err != nil || sender == "" {
			if sender == "" && fw != "" {
				t.Fatalf("null sender rewritten to %q", fw)
			}
			return
		}
		at := strings.LastIndexByte(fw, '@')
		back, err := r.Reverse(fw[:at])
		if err != nil {
			t.Fatalf("Reverse(Forward(%q) = %q): %v", sender, fw, err)
		}
		if !IsSRS(sender[:strings.LastIndexByte(sender, '@')]) {
			sat := strings.LastIndexByte(sender, '@')
			if back != sender[:sat]+"@"+strings.ToLower(sender[sat+1:]) {
				t.Fatalf("round trip %q → %q → %q", sender, fw, back)
			}
		}
	})
}
