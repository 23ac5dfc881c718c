package mailauth_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/postrider/postrider/mailauth"
)

func strip(t *testing.T, m string) string {
	t.Helper()
	b, err := io.ReadAll(mailauth.StripAuthResults(strings.NewReader(m), "mx.example.org", 0))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestStripAuthResults(t *testing.T) {
	t.Parallel()
	body := "\r\nAuthentication-Results: mx.example.org; dkim=pass (in the body: kept)\r\n"
	cases := []struct{ name, in, want string }{
		{"ours", "Authentication-Results: mx.example.org; spf=pass\r\nSubject: x\r\n", "Subject: x\r\n"},
		{"ours, case and dot", "authentication-results:MX.Example.ORG.; dkim=pass\r\nSubject: x\r\n", "Subject: x\r\n"},
		{"ours, folded", "Subject: x\r\nAuthentication-Results:\r\n\tmx.example.org;\r\n\tdkim=pass header.d=bank.example\r\nTo: y\r\n", "Subject: x\r\nTo: y\r\n"},
		{"ours, comment", "Authentication-Results: (trust me) mx.example.org (really); dmarc=pass\r\n", ""},
		{"ours, nested comment", "Authentication-Results: (a (b) c) mx.example.org; dmarc=pass\r\n", ""},
		{"ours, quoted", "Authentication-Results: \"mx.example.org\"; dmarc=pass\r\n", ""},
		{"ours, quoted-pair", "Authentication-Results: \"mx.exa\\mple.org\"; dmarc=pass\r\n", ""},
		{"ours, version", "Authentication-Results: mx.example.org 1; dmarc=pass\r\n", ""},
		{"ours, none", "Authentication-Results: mx.example.org; none\r\n", ""},
		{"space before colon", "Authentication-Results : mx.example.org; spf=pass\r\n", ""},
		{"unreadable", "Authentication-Results: (unterminated mx.example.org; spf=pass\r\n", ""},
		{"empty", "Authentication-Results:\r\n", ""},
		{"theirs", "Authentication-Results: mx.other.example; spf=pass\r\n", "Authentication-Results: mx.other.example; spf=pass\r\n"},
		{"suffix is not ours", "Authentication-Results: evil-mx.example.org; spf=pass\r\n", "Authentication-Results: evil-mx.example.org; spf=pass\r\n"},
		{"prefix is not ours", "Authentication-Results: mx.example.org.evil; spf=pass\r\n", "Authentication-Results: mx.example.org.evil; spf=pass\r\n"},
		{"ARC is not ours to remove", "ARC-Authentication-Results: i=1; mx.example.org; spf=pass\r\n", "ARC-Authentication-Results: i=1; mx.example.org; spf=pass\r\n"},
		{"two of ours among others", "Received: a\r\nAuthentication-Results: mx.example.org; spf=pass\r\nX: 1\r\nAuthentication-Results: mx.example.org; dkim=pass\r\nX: 2\r\n", "Received: a\r\nX: 1\r\nX: 2\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := strip(t, tc.in+body); got != tc.want+body {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want+body)
			}
		})
	}
	t.Run("no body", func(t *testing.T) {
		in := "Subject: x\r\nAuthentication-Results: mx.example.org; spf=pass\r\n"
		if got := strip(t, in); got != "Subject: x\r\n" {
			t.Errorf("got %q", got)
		}
	})
	t.Run("no header", func(t *testing.T) {
		in := "\r\nAuthentication-Results: mx.example.org; spf=pass\r\n"
		if got := strip(t, in); got != in {
			t.Errorf("got %q", got)
		}
	})
	t.Run("one octet at a time", func(t *testing.T) {
		in := "Authentication-Results: mx.example.org; spf=pass\r\nSubject: x\r\n" + body + strings.Repeat("line\r\n", 10000)
		b, err := io.ReadAll(mailauth.StripAuthResults(iotest.OneByteReader(strings.NewReader(in)), "mx.example.org", 0))
		if err != nil {
			t.Fatal(err)
		}
		if want := in[len("Authentication-Results: mx.example.org; spf=pass\r\n"):]; string(b) != want {
			t.Errorf("stripped message differs (%d octets, want %d)", len(b), len(want))
		}
	})
	t.Run("bounded", func(t *testing.T) {
		in := "Subject: " + strings.Repeat("x", 5000) + "\r\n\r\nbody\r\n"
		_, err := io.ReadAll(mailauth.StripAuthResults(strings.NewReader(in), "mx.example.org", 4096))
		if !errors.Is(err, mailauth.ErrHeaderTooLarge) {
			t.Errorf("err = %v, want ErrHeaderTooLarge", err)
		}
		// The body is not bounded.
		in = "Subject: x\r\n\r\n" + strings.Repeat("y", 100000)
		b, err := io.ReadAll(mailauth.StripAuthResults(strings.NewReader(in), "mx.example.org", 4096))
		if err != nil || !bytes.Equal(b, []byte(in)) {
			t.Errorf("long body: %d octets, %v", len(b), err)
		}
	})
}

func TestAuthResultsHeader(t *testing.T) {
	t.Parallel()
	r := &mailauth.Result{
		SPF: mailauth.SPFResult{Result: "pass", Identity: "mailfrom", Domain: "example.com", MailFrom: "bounce+x=y@Example.COM"},
		DKIM: []mailauth.DKIMResult{
			{Result: "pass", Domain: "example.com", Selector: "sel", B: "ab/cd+EF"},
			{Result: "fail", Domain: "evil.example", Selector: "s;1", Reason: `body "hash" did not verify`},
		},
		DMARC: mailauth.DMARCResult{Result: "pass", FromDomain: "example.com", Policy: "reject"},
	}
	want := "Authentication-Results: mx.example.org;\r\n" +
		"\tspf=pass smtp.mailfrom=bounce+x=y@example.com;\r\n" +
		"\tdkim=pass header.d=example.com header.s=sel header.b=\"ab/cd+EF\";\r\n" +
		"\tdkim=fail reason=\"body \\\"hash\\\" did not verify\" header.d=evil.example header.s=\"s;1\";\r\n" +
		"\tdmarc=pass (p=reject) header.from=example.com\r\n"
	if got := string(r.AuthResults("mx.example.org")); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}

	r = &mailauth.Result{
		SPF:   mailauth.SPFResult{Result: "none", Identity: "helo", Domain: "client.example", Reason: "no SPF record"},
		DMARC: mailauth.DMARCResult{Result: "permerror", Reason: "more than one From: field\r\nX-Injected: 1"},
	}
	want = "Authentication-Results: \"mx@odd\";\r\n" +
		"\tspf=none reason=\"no SPF record\" smtp.helo=client.example;\r\n" +
		"\tdkim=none;\r\n" +
		"\tdmarc=permerror reason=\"more than one From: field??X-Injected: 1\"\r\n"
	if got := string(r.AuthResults("mx@odd")); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}

	// A local part that is not a dot-atom: the domain alone (RFC 8601 §2.2 pvalue).
	r.SPF = mailauth.SPFResult{Result: "fail", Identity: "mailfrom", Domain: "example.com", MailFrom: `"a b"@example.com`}
	if got := string(r.AuthResults("mx")); !strings.Contains(got, "\tspf=fail smtp.mailfrom=example.com;\r\n") {
		t.Errorf("got %s", got)
	}
}

// TestAuthResultsRoundTrip: a header we write is one we strip (a copy
// of our own verdict that comes back is removed).
func TestAuthResultsRoundTrip(t *testing.T) {
	t.Parallel()
	r := &mailauth.Result{SPF: mailauth.SPFResult{Result: "pass"}, DMARC: mailauth.DMARCResult{Result: "none"}}
	for _, id := range []string{"mx.example.org", "odd host", `q"uote`} {
		m := string(r.AuthResults(id)) + "Subject: x\r\n\r\nbody\r\n"
		b, err := io.ReadAll(mailauth.StripAuthResults(strings.NewReader(m), id, 0))
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != "Subject: x\r\n\r\nbody\r\n" {
			t.Errorf("%q: got %q", id, b)
		}
	}
}
