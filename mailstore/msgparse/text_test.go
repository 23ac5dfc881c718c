package msgparse

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime/quotedprintable"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestText(t *testing.T) {
	for _, tc := range []struct {
		name, msg, want string
	}{
		{"plain", "Subject: x\r\n\r\nHello\r\nWorld\r\n", "Hello\nWorld\n"},
		{"no content type, bare LF", "\nHello\n", "Hello\n"},
		{"qp utf-8", "Content-Transfer-Encoding: quoted-printable\r\nContent-Type: text/plain; charset=utf-8\r\n\r\ncaf=C3=A9 soft=\r\nbreak =3D =ZZ =\r\n", "café softbreak = =ZZ "},
		{"qp lower hex and padding", "Content-Transfer-Encoding: Quoted-Printable\r\n\r\na=c3=a9 = \t\r\nb\r\n", "aé b\n"},
		{"base64 latin1", "Content-Type: text/plain; charset=ISO-8859-1\r\nContent-Transfer-Encoding: base64\r\n\r\nY2Fm6SBjcuhtZQ==\r\n", "café crème"},
		{"windows-1252", "Content-Type: text/plain; charset=windows-1252\r\n\r\n\x93q\x94 \x80", "“q” €"},
		{"koi8-r 8bit", "Content-Type: text/plain; charset=koi8-r\r\n\r\n\xf0\xd2\xc9\xd7\xc5\xd4", "Привет"},
		{"shift_jis", "Content-Type: text/plain; charset=shift_jis\r\n\r\n\x93\xfa\x96\x7b", "日本"},
		{"iso-2022-jp", "Content-Type: text/plain; charset=iso-2022-jp\r\n\r\n\x1b$BF|K\\\x1b(B", "日本"},
		{"invalid utf-8", "Content-Type: text/plain; charset=utf-8\r\n\r\na\xffb\xe2\x82", "a\uFFFDb\uFFFD"},
		{"unknown charset", "Content-Type: text/plain; charset=x-nonsense\r\n\r\nabc", "abc"},
		{"html", "Content-Type: text/html\r\n\r\n<html><head><style>p{color:red}</style><title>T</title></head>" +
			"<body><!-- hidden <b> --><p class=\"a>b\">caf&eacute;&amp;&#233;&#x263A;&nbsp;x &unknown; a<b>b</b>1 < 2</p>" +
			"<SCRIPT type=x>var s = '<p>no</p>';</SCRIPT>end</body></html>",
			" T caf&eacute;&é☺ x &unknown; a b 1 < 2 end "},
		{"attachment not text", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b\r\nContent-Type: image/png\r\n\r\nPNGDATA\r\n--b\r\nContent-Type: text/plain\r\n\r\ntwo\r\n\r\n--b--\r\n",
			"one\ntwo\n"},
		{"embedded message text", "Content-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\ninner text", "inner text"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := parseString(t, tc.msg)
			if m.Text != tc.want {
				t.Errorf("text %q, want %q", m.Text, tc.want)
			}
			checkChunking(t, tc.msg, m)
		})
	}
}

// TestTextCodecs cross-checks the streaming decoders against the standard
// library on larger inputs, fed one octet at a time.
func TestTextCodecs(t *testing.T) {
	var plain strings.Builder
	for i := 0; plain.Len() < 20000; i++ {
		plain.WriteString("Grüße aus Köln = ")
		plain.WriteString(strings.Repeat("é", i%90))
		plain.WriteString("\n")
	}
	want := plain.String()

	var qp bytes.Buffer
	w := quotedprintable.NewWriter(&qp)
	io.WriteString(w, strings.ReplaceAll(want, "\n", "\r\n"))
	w.Close()
	b64 := base64.StdEncoding.EncodeToString([]byte(want))
	var b64lines strings.Builder
	for len(b64) > 76 {
		b64lines.WriteString(b64[:76] + "\r\n")
		b64 = b64[76:]
	}
	b64lines.WriteString(b64 + "\r\n")

	for name, msg := range map[string]string{
		"qp":     "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + qp.String(),
		"base64": "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64lines.String(),
	} {
		m := parseString(t, msg)
		if got := strings.TrimSuffix(m.Text, "\n"); got != strings.TrimSuffix(want, "\n") {
			t.Errorf("%s: decoded text differs (%d vs %d octets)", name, len(got), len(want))
		}
		checkChunking(t, msg, m)
	}
}

func TestTextLimit(t *testing.T) {
	p := NewParser()
	p.Write([]byte("Content-Type: text/plain; charset=utf-8\r\n\r\n"))
	line := []byte(strings.Repeat("日本語", 100) + "\r\n")
	for n := 0; n < MaxSearchText*11/10; n += len(line) {
		p.Write(line)
	}
	m, _ := p.Finish()
	if len(m.Text) > MaxSearchText || len(m.Text) < MaxSearchText-8 {
		t.Errorf("text length %d", len(m.Text))
	}
	checkInvariants(t, m)
}

func TestPreview(t *testing.T) {
	long := strings.Repeat("word ", 100)
	cases := []struct{ name, msg, want string }{
		{"plain", "Subject: x\r\n\r\n  Hello,\r\n\r\n\tworld!  \r\n", "Hello, world!"},
		{"none", "Subject: x\r\nContent-Type: image/png\r\n\r\nAAAA\r\n", ""},
		{"empty", "Subject: x\r\n\r\n", ""},
		{"html", "Content-Type: text/html\r\n\r\n<html><head><style>p{}</style></head><body><p>Hi &amp; <b>bye</b></p></body></html>\r\n", "Hi & bye"},
		{"qp", "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9 cr=\r\n=E8me\r\n", "Café crème"},
		{"attachment first", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nattached\r\n--b\r\nContent-Type: text/plain\r\n\r\nthe body\r\n--b--\r\n", "the body"},
		{"alternative", "Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nplain one\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>html one</p>\r\n--b--\r\n", "plain one"},
		{"long", "\r\n" + long, long[:256]},
	}
	for _, c := range cases {
		m, err := Parse(strings.NewReader(c.msg))
		if err != nil {
			t.Fatal(err)
		}
		if m.Preview == nil || *m.Preview != c.want {
			t.Errorf("%s: preview %q, want %q", c.name, deref(m.Preview), c.want)
		}
		if got := Preview([]byte(c.msg)); got != c.want {
			t.Errorf("%s: Preview() %q, want %q", c.name, got, c.want)
		}
	}
	// 256 characters at most, counted in characters, not octets.
	m, _ := Parse(strings.NewReader("\r\n" + strings.Repeat("é", 1000)))
	if n := utf8.RuneCountInString(*m.Preview); n != MaxPreviewChars {
		t.Errorf("preview of %d characters", n)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}
