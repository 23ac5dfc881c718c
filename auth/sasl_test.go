package auth

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

func saslHarness(t *testing.T) (*harness, *fakeStore) {
	t.Helper()
	st := newFakeStore()
	st.add("alice@example.org", mustHash(t, "s3cret"))
	return newHarness(t, st), st
}

func TestMechanisms(t *testing.T) {
	if !slices.Equal(Mechanisms(), []string{"PLAIN", "LOGIN"}) {
		t.Fatal(Mechanisms())
	}
	h, _ := saslHarness(t)
	for _, m := range []string{"PLAIN", "plain", "Login"} {
		if _, err := h.NewSASL(m, ip1); err != nil {
			t.Errorf("NewSASL(%s): %v", m, err)
		}
	}
	for _, m := range []string{"CRAM-MD5", "SCRAM-SHA-256", "XOAUTH2", "", "PLAIN "} {
		if _, err := h.NewSASL(m, ip1); !errors.Is(err, ErrUnsupportedMechanism) {
			t.Errorf("NewSASL(%q): %v", m, err)
		}
	}
}

// step is one client response and what the server should answer.
type step struct {
	response  []byte // nil: no (initial) response
	challenge string
	done      bool
	err       error
}

func runSASL(t *testing.T, h *harness, mech string, steps []step) SASLSession {
	t.Helper()
	s, err := h.NewSASL(mech, ip1)
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range steps {
		ch, done, err := s.Next(context.Background(), st.response)
		if st.err != nil {
			if !errors.Is(err, st.err) {
				t.Fatalf("step %d: err = %v, want %v", i, err, st.err)
			}
			continue
		}
		if err != nil || done != st.done || string(ch) != st.challenge {
			t.Fatalf("step %d: got (%q, %v, %v), want (%q, %v, nil)", i, ch, done, err, st.challenge, st.done)
		}
	}
	return s
}

func TestPLAIN(t *testing.T) {
	h, st := saslHarness(t)
	// RFC 4616 §4 style exchange with an initial response.
	s := runSASL(t, h, "PLAIN", []step{{response: []byte("\x00alice@example.org\x00s3cret"), done: true}})
	if s.Account().Address != "alice@example.org" {
		t.Fatalf("account %+v", s.Account())
	}
	// Without an initial response the server sends an empty challenge.
	runSASL(t, h, "PLAIN", []step{{response: nil, challenge: ""}, {response: []byte("\x00Alice@Example.org\x00s3cret"), done: true}})
	// authzid equal to authcid (after normalisation) is allowed.
	runSASL(t, h, "PLAIN", []step{{response: []byte("ALICE@example.org\x00alice@example.org\x00s3cret"), done: true}})
	// Wrong password and unknown user look alike.
	runSASL(t, h, "PLAIN", []step{{response: []byte("\x00alice@example.org\x00wrong"), err: ErrInvalidCredentials}})
	runSASL(t, h, "PLAIN", []step{{response: []byte("\x00nobody@example.org\x00s3cret"), err: ErrInvalidCredentials}})
	if n := st.count("ip:192.0.2.10"); n != 2 {
		t.Errorf("%d failures recorded, want 2", n)
	}
	// Acting as someone else is refused before the password is checked,
	// and is not a password failure.
	s = runSASL(t, h, "PLAIN", []step{{response: []byte("bob@example.org\x00alice@example.org\x00s3cret"), err: ErrAuthorizationFailed}})
	if !errors.Is(ErrAuthorizationFailed, ErrInvalidCredentials) {
		t.Error("ErrAuthorizationFailed does not wrap ErrInvalidCredentials")
	}
	if n := st.count("ip:192.0.2.10"); n != 2 {
		t.Errorf("authorization failure recorded as a password failure (%d)", n)
	}
	// The exchange is over after an error.
	if _, _, err := s.Next(context.Background(), []byte("\x00alice@example.org\x00s3cret")); err == nil {
		t.Error("Next after failure succeeded")
	}
}

func TestPLAINMalformed(t *testing.T) {
	h, st := saslHarness(t)
	for _, msg := range []string{
		"",
		"alice@example.org",
		"alice@example.org\x00s3cret",
		"\x00\x00s3cret",
		"\x00alice@example.org\x00",
		"\x00alice@example.org\x00s3cret\x00",
		"\x00alice@example.org\x00s3\x00cret",
		"\x00alice\xff@example.org\x00s3cret",
		"\xc3\x28\x00alice@example.org\x00s3cret",
		"\x00alice@example.org\x00" + strings.Repeat("p", MaxSASLResponse),
	} {
		runSASL(t, h, "PLAIN", []step{{response: []byte(msg), err: ErrMalformed}})
	}
	// An empty response to the empty challenge is malformed too.
	runSASL(t, h, "PLAIN", []step{{response: nil, challenge: ""}, {response: []byte{}, err: ErrMalformed}})
	if len(st.failures) != 0 {
		t.Errorf("malformed messages recorded failures: %v", st.failures)
	}
	// A non-UTF-8 password is passed through as octets.
	st.add("latin@example.org", mustHash(t, "caf\xe9"))
	runSASL(t, h, "PLAIN", []step{{response: []byte("\x00latin@example.org\x00caf\xe9"), done: true}})
}

func TestLOGIN(t *testing.T) {
	h, _ := saslHarness(t)
	s := runSASL(t, h, "LOGIN", []step{
		{response: nil, challenge: "Username:"},
		{response: []byte("alice@example.org"), challenge: "Password:"},
		{response: []byte("s3cret"), done: true},
	})
	if s.Account().Address != "alice@example.org" {
		t.Fatalf("account %+v", s.Account())
	}
	if _, _, err := s.Next(context.Background(), []byte("x")); err == nil {
		t.Error("Next after success succeeded")
	}
	// The initial response, if any, is the username (SMTP "AUTH LOGIN <b64>").
	runSASL(t, h, "LOGIN", []step{
		{response: []byte("alice@example.org"), challenge: "Password:"},
		{response: []byte("s3cret"), done: true},
	})
	runSASL(t, h, "LOGIN", []step{
		{response: nil, challenge: "Username:"},
		{response: []byte("alice@example.org"), challenge: "Password:"},
		{response: []byte("wrong"), err: ErrInvalidCredentials},
	})
	for _, bad := range [][]step{
		{{response: nil, challenge: "Username:"}, {response: []byte{}, err: ErrMalformed}},
		{{response: []byte("a\x00b"), err: ErrMalformed}},
		{{response: []byte("\xff\xfe"), err: ErrMalformed}},
		{{response: []byte("alice@example.org"), challenge: "Password:"}, {response: []byte{}, err: ErrMalformed}},
		{{response: []byte("alice@example.org"), challenge: "Password:"}, {response: bytes.Repeat([]byte("p"), MaxSASLResponse+1), err: ErrMalformed}},
	} {
		runSASL(t, h, "LOGIN", bad)
	}
}

func TestSASLThrottled(t *testing.T) {
	h, _ := saslHarness(t)
	for range DefaultThrottlePolicy.PairBlock {
		runSASL(t, h, "PLAIN", []step{{response: []byte("\x00alice@example.org\x00wrong"), err: ErrInvalidCredentials}})
	}
	runSASL(t, h, "LOGIN", []step{
		{response: []byte("alice@example.org"), challenge: "Password:"},
		{response: []byte("s3cret"), err: ErrThrottled},
	})
}

func TestParsePlain(t *testing.T) {
	z, c, p, err := parsePlain([]byte("admin\x00alice@example.org\x00pw with spaces"))
	if err != nil || z != "admin" || c != "alice@example.org" || p != "pw with spaces" {
		t.Fatalf("got %q %q %q %v", z, c, p, err)
	}
	// The largest message RFC 4616 §2 requires servers to accept.
	largest := strings.Repeat("z", 255) + "\x00" + strings.Repeat("c", 255) + "\x00" + strings.Repeat("p", 255)
	if _, _, _, err := parsePlain([]byte(largest)); err != nil {
		t.Fatalf("255-octet fields: %v", err)
	}
}

// FuzzParsePlain checks the PLAIN message parser: no panics, and whatever it
// accepts rebuilds exactly the message, within bounds.
func FuzzParsePlain(f *testing.F) {
	for _, seed := range []string{
		"\x00alice@example.org\x00s3cret",
		"alice@example.org\x00alice@example.org\x00s3cret",
		"\x00tim\x00tanstaaftanstaaf", // RFC 4616 §4
		"Ursel\x00Kurt\x00xipj3plmq",  // RFC 4616 §4
		"\x00\x00",
		"\x00a\x00",
		"a\x00b",
		"\x00\xc3\x28\x00p",
		"\x00a\x00b\x00c",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		z, c, p, err := parsePlain(msg)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if len(msg) > MaxSASLResponse || c == "" || p == "" {
			t.Fatalf("accepted %q", msg)
		}
		if z+"\x00"+c+"\x00"+p != string(msg) {
			t.Fatalf("fields %q %q %q do not rebuild %q", z, c, p, msg)
		}
		if strings.ContainsRune(z+c+p, 0) {
			t.Fatalf("NUL inside a field of %q", msg)
		}
	})
}
