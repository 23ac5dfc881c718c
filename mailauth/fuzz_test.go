package mailauth

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// FuzzStripAuthResults: the header filter never grows a message, never
// touches the body, leaves none of our fields behind, keeps every other
// field as it was, and is idempotent.
func FuzzStripAuthResults(f *testing.F) {
	for _, s := range []string{
		"Authentication-Results: mx.example.org; spf=pass\r\nSubject: x\r\n\r\nbody\r\n",
		"Authentication-Results: (c (n)) \"mx.example.org\" 1; none\r\n\tfolded\r\n\r\n",
		"Subject: x\r\n\r\nAuthentication-Results: mx.example.org; spf=pass\r\n",
		"\tleading continuation\r\nAuthentication-Results:mx.example.org\r\n",
		"Authentication-Results: (\\) mx.example.org; x\nbare: lf\n\nbody",
		"no colon line\r\nAuthentication-Results: other; spf=pass\r\n",
		"",
	} {
		f.Add(s)
	}
	const id = "mx.example.org"
	f.Fuzz(func(t *testing.T, in string) {
		out, err := io.ReadAll(StripAuthResults(strings.NewReader(in), id, 4096))
		if err != nil {
			if err != ErrHeaderTooLarge {
				t.Fatalf("error %v", err)
			}
			return
		}
		if len(out) > len(in) {
			t.Fatalf("output grew: %d > %d", len(out), len(in))
		}
		hdr, rest, err := readHeader(strings.NewReader(in), 4096)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(rest)
		if !bytes.HasSuffix(out, body) {
			t.Fatalf("body changed")
		}
		outHdr := out[:len(out)-len(body)]
		var kept []field
		for _, fl := range splitFields(hdr) {
			if !isOurAuthResults(fl, id) {
				kept = append(kept, fl)
			}
		}
		got := splitFields(outHdr)
		if len(got) != len(kept) {
			t.Fatalf("%d fields kept, want %d", len(got), len(kept))
		}
		for i := range got {
			if !bytes.Equal(got[i].raw, kept[i].raw) {
				t.Fatalf("field %d: %q, want %q", i, got[i].raw, kept[i].raw)
			}
			if isOurAuthResults(got[i], id) {
				t.Fatalf("our field left: %q", got[i].raw)
			}
		}
		again, err := io.ReadAll(StripAuthResults(bytes.NewReader(out), id, 4096))
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q then %q (%v)", out, again, err)
		}
	})
}

// FuzzAuthservID: an authserv-id we write reads back as itself.
func FuzzAuthservID(f *testing.F) {
	for _, s := range []string{"mx.example.org", "a b", `q"u\o`, "(x)", ";", "", "é"} {
		f.Add(s, "; spf=pass")
	}
	f.Fuzz(func(t *testing.T, id, tail string) {
		_, _ = parseAuthservID(id + tail) // never panics
		printable := id != "" && len(id) <= maxValue
		for i := 0; i < len(id); i++ {
			if id[i] < 0x20 || id[i] >= 0x7f {
				printable = false
			}
		}
		if !printable {
			return
		}
		got, ok := parseAuthservID(" " + value(id) + "; spf=pass")
		if !ok || got != id {
			t.Fatalf("%q written as %q reads %q, %v", id, value(id), got, ok)
		}
	})
}

// FuzzAuthResults: whatever the results hold, the field is one
// header field (CRLF only at folds and its end, each fold followed by a
// tab) that StripAuthResults recognises as ours.
func FuzzAuthResults(f *testing.F) {
	f.Add("mx.example.org", "a@example.com", "example.com", "sel", "abc/+=", "reason\r\nX: y", "example.com")
	f.Add("h", `"q"@x`, "", "", "", "", "")
	f.Fuzz(func(t *testing.T, id, mailFrom, d, s, b, reason, from string) {
		if id == "" || len(id) > maxValue || strings.IndexFunc(id, func(r rune) bool { return r < 0x20 || r >= 0x7f }) >= 0 {
			return // not a host name we would be configured with
		}
		r := &Result{
			SPF:   SPFResult{Result: SPFFail, Identity: "mailfrom", Domain: d, MailFrom: mailFrom, Reason: reason},
			DKIM:  []DKIMResult{{Result: DKIMFail, Domain: d, Selector: s, B: b, Reason: reason}},
			DMARC: DMARCResult{Result: DMARCFail, FromDomain: from, Policy: PolicyReject, Reason: reason},
		}
		h := r.AuthResults(id)
		if !bytes.HasSuffix(h, []byte("\r\n")) {
			t.Fatalf("no CRLF at the end: %q", h)
		}
		inner := h[:len(h)-2]
		for i := 0; i < len(inner); i++ {
			switch inner[i] {
			case '\r':
				if i+2 >= len(inner) || inner[i+1] != '\n' || inner[i+2] != '\t' {
					t.Fatalf("bare CR or fold without tab at %d: %q", i, h)
				}
			case '\n':
				if i == 0 || inner[i-1] != '\r' {
					t.Fatalf("bare LF at %d: %q", i, h)
				}
			}
		}
		for _, l := range bytes.Split(inner, []byte("\r\n")) {
			if len(l) > 998 {
				t.Fatalf("line of %d octets (RFC 5322 §2.1.1)", len(l))
			}
		}
		fs := splitFields(append(h, "\r\n"...))
		if len(fs) != 2 || !isOurAuthResults(fs[0], id) {
			t.Fatalf("not one field of ours: %q", h)
		}
		if got, ok := parseAuthservID(fs[0].value()); !ok || got != id {
			t.Fatalf("authserv-id reads %q, %v; want %q", got, ok, id)
		}
	})
}

// FuzzMessageHeader: the header parsing of Message (From: domain, DKIM
// tag lists) on arbitrary input: bounded, no panics, and a From domain is
// lower-case ASCII.
func FuzzMessageHeader(f *testing.F) {
	f.Add("From: A <a@Example.COM>\r\nDKIM-Signature: v=1; d=example.com; s=sel; b=abc\r\n\r\nbody")
	f.Add("From: =?utf-8?q?x?= <a@bücher.example>, b@xn--bcher-kva.example\r\n\r\n")
	f.Add("From: a@b\r\nFrom: c@d\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		hdr, _, err := readHeader(strings.NewReader(in), 8192)
		if err != nil {
			return
		}
		fs := splitFields(hdr)
		d, why := fromDomain(fs)
		if (d == "") == (why == "") {
			t.Fatalf("domain %q with reason %q", d, why)
		}
		for i := 0; i < len(d); i++ {
			if d[i] >= 0x80 || d[i] >= 'A' && d[i] <= 'Z' || d[i] == '@' {
				t.Fatalf("domain %q", d)
			}
		}
		for _, v := range fieldsNamed(fs, "DKIM-Signature") {
			if len(tagList(v)) > 32 {
				t.Fatal("tag list not bounded")
			}
		}
	})
}
