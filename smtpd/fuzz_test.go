package smtpd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/frontend"
	"github.com/postrider/postrider/mailstore"
)

// Fuzz targets for every parser of network input: addresses, the data
// scanner, the From: header check, and the whole server on arbitrary
// client bytes; the command line, MAIL/RCPT parameter, DATA and BDAT
// readers have theirs in wire_fuzz_test.go.

func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{
		"alice@example.org", "Alice+tag@Example.ORG", "user%other@example.org", "a@b@c", "user@example.org.",
		"x@[127.0.0.1]", "x@[IPv6:::1]", "x@[tag:content]", "jörg@bücher.example", "@", "a@", "@b",
		"a@xn--bcher-kva.example", "a@-bad-.example", "a@exa_mple.org", strings.Repeat("a", 70) + "@x.org",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, utf8ok bool) {
		a, err := parseAddress(s, utf8ok)
		if err != nil {
			return
		}
		if a.local == "" || len(a.local) > mailstore.MaxLocalPartLength || a.domain == "" {
			t.Fatalf("%q parsed to %+v", s, a)
		}
		if !utf8ok && !isASCII(s) {
			t.Fatalf("non-ASCII %q accepted without SMTPUTF8", s)
		}
		if strings.ContainsAny(a.local, "\r\n\x00") {
			t.Fatalf("control character in local part of %q", s)
		}
		if a.literal {
			if !validAddressLiteral(a.domain) {
				t.Fatalf("bad literal %q", a.domain)
			}
			return
		}
		if _, err := mailstore.NormalizeDomain(a.domain); err != nil || strings.HasSuffix(a.domain, ".") || a.domain != strings.ToLower(a.domain) {
			t.Fatalf("%q gave domain %q (%v)", s, a.domain, err)
		}
		// Idempotent on its own output.
		if d2, err := asciiDomain(a.domain); err != nil || d2 != a.domain {
			t.Fatalf("domain %q not stable: %q %v", a.domain, d2, err)
		}
	})
}

// refScan is the obvious whole-buffer version of dataScanner's rules.
func refScan(data []byte, maxHeader int64) (header []byte, err error) {
	for i, b := range data {
		switch {
		case b == 0:
			return nil, errNUL
		case b == '\r' && (i+1 == len(data) || data[i+1] != '\n'):
			return nil, errBareCR
		case b == '\n' && (i == 0 || data[i-1] != '\r'):
			return nil, errBareLF
		}
	}
	end := len(data)
	if bytes.HasPrefix(data, []byte("\r\n")) {
		end = 2
	} else if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
		end = i + 4
	}
	if int64(end) > maxHeader {
		return nil, errHeader
	}
	return data[:end], nil
}

func FuzzDataScanner(f *testing.F) {
	for _, s := range []string{
		"Subject: x\r\n\r\nbody\r\n", "a\nb", "a\rb", "a\r", "\r\n", "x\r\n\x00.\r\n", "h: v\r\n folded\r\n\r\n",
		"body\n.\n", "\r.\r\n", "no header end\r\n",
	} {
		f.Add([]byte(s), []byte{1, 3}, uint8(16))
	}
	f.Fuzz(func(t *testing.T, data, splits []byte, maxHdr uint8) {
		wantHdr, wantErr := refScan(data, int64(maxHdr))
		sc := newDataScanner(int64(maxHdr), true)
		var err error
		rest := data
		for i := 0; len(rest) > 0 && err == nil; i++ {
			n := len(rest)
			if i < len(splits) {
				n = min(n, int(splits[i])+1)
			}
			err = sc.scan(rest[:n])
			rest = rest[n:]
		}
		if err == nil {
			err = sc.finish()
		}
		// The scanner may report a header overflow before a later bare
		// CR/LF, the reference the other way round: both refuse.
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("scan(%q) = %v, reference %v", data, err, wantErr)
		}
		if err == nil && !bytes.Equal(sc.header, wantHdr) {
			t.Fatalf("header %q, want %q", sc.header, wantHdr)
		}
	})
}

func FuzzHeaderOriginators(f *testing.F) {
	for _, s := range []string{
		"From: a@b.example\r\n\r\n", "From: \"A, B\" <a@b.example>, c@d.example\r\n", "from:\r\n x@y.example\r\n",
		"From: =?UTF-8?B?w6k=?= <e@f.example>\r\n", "From: group: a@b.example;\r\n", "From: <>\r\n", "From:\r\n",
		"From: a@b.example\r\nSender: \"c@d.example\" <a@b.example>\r\n",
		"Resent-From: =?utf-8?q?bob=40example.test?= <a@b.example>\r\nResent-Sender: a@b.example (x@y.example)\r\n",
		"From: \"=?utf-8?q?bob=40example.test?=\" <a@b.example>\r\n", "From: =?utf-7?q?bob+AEA-x.example?= <a@b.example>\r\n",
		"From: =?utf-16?b?AGIAbwBiAEAAZQB4AC4AdABlAHMAdA==?= <a@b.example>\r\n", "From: Bob \uff20 Home <a@b.example>\r\n",
	} {
		f.Add([]byte(s))
	}
	never := func(string) bool { return false }
	always := func(string) bool { return true }
	f.Fuzz(func(t *testing.T, hdr []byte) {
		fields, err := headerOriginators(hdr)
		if err != nil {
			return
		}
		from := 0
		for _, o := range fields {
			if o.field == "From" {
				from++
			}
			if len(o.addrs) == 0 {
				t.Fatalf("%s: without addresses from %q", o.field, hdr)
			}
			for _, a := range o.addrs {
				if !strings.Contains(a.Address, "@") {
					t.Fatalf("address %q without @ from %q", a.Address, hdr)
				}
				if got := foreignAddressIn(a.Name, always); got != "" {
					t.Fatalf("name %q: %q refused although every address is owned", a.Name, got)
				}
				got := foreignAddressIn(a.Name, never)
				if got != "" && !strings.Contains(got, "@") {
					t.Fatalf("name %q: token %q has no @", a.Name, got)
				}
				if got == "" {
					for _, w := range strings.Fields(a.Name) {
						if l, d, ok := strings.Cut(w, "@"); ok && isDotAtom(l) && isDotAtom(d) {
							t.Fatalf("name %q: address-like %q not found", a.Name, w)
						}
					}
				}
			}
		}
		if from != 1 {
			t.Fatalf("%d From: fields accepted in %q", from, hdr)
		}
	})
}

// fuzzStore is an in-memory store for FuzzSession: example.org has one
// user; everything else is not local.
type fuzzStore struct {
	mailstore.Store
	mu     sync.Mutex
	bodies [][]byte
}

func (s *fuzzStore) Resolve(_ context.Context, addr string) (mailstore.Resolution, error) {
	a, err := mailstore.NormalizeAddress(addr)
	if err != nil {
		return mailstore.Resolution{}, err
	}
	if _, d := mailstore.SplitAddress(a); d != "example.org" {
		return mailstore.Resolution{}, mailstore.ErrNotLocalDomain
	}
	if a != "alice@example.org" {
		return mailstore.Resolution{}, mailstore.ErrNoSuchRecipient
	}
	return mailstore.Resolution{Accounts: []mailstore.Account{{ID: 1, Address: a}}}, nil
}

func (s *fuzzStore) ClusterSecret(context.Context, string, func() ([]byte, error)) ([]byte, error) {
	return []byte("fuzz-store-srs-key-0123456789"), nil
}

func (s *fuzzStore) ListDKIMKeys(context.Context, string) ([]mailstore.DKIMKey, error) {
	return nil, nil
}

func (s *fuzzStore) IsLocalDomain(_ context.Context, d string) (bool, error) {
	return d == "example.org", nil
}

func (s *fuzzStore) Deliver(_ context.Context, d *mailstore.Delivery) (mailstore.DeliveryResult, error) {
	b, err := io.ReadAll(d.Body)
	if err != nil {
		return mailstore.DeliveryResult{}, err
	}
	s.mu.Lock()
	s.bodies = append(s.bodies, b)
	s.mu.Unlock()
	return mailstore.DeliveryResult{Size: int64(len(b)), Delivered: []mailstore.Delivered{{AccountID: 1, MailboxID: 1, UID: 1}}}, nil
}

// pipeListener yields one connection.
type pipeListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *pipeListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 25} }

// FuzzSession feeds arbitrary client bytes to the whole server (command
// loop, readers, session) and checks that whatever is delivered has CR and LF
// only as CRLF and no NUL, and that the server neither panics nor hangs.
func FuzzSession(f *testing.F) {
	seeds := []string{
		"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nSubject: s\r\n\r\nhi\r\n.\r\nQUIT\r\n",
		"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nhi\n.\nMAIL FROM:<e@v.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nevil\r\n.\r\n",
		"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nBDAT 5\r\nab\r\nxBDAT 3 LAST\r\n\ncd\r\n",
		"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nBDAT 4 LAST\r\na\nb\r\n.\r\n",
		"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nx\r\n.\r\r\nMAIL FROM:<e@v.example>\r\n.\r\n",
		"EHLO x\nMAIL FROM:<a@b.example>\n", "HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n.\r\n",
		"EHLO x\r\nAUTH PLAIN\r\nAHgAeQ==\r\nSTARTTLS\r\n",
		"EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<SRS0=AAAAAAAA=AB=x.example=y@example.org>\r\nRCPT TO:<srs1=x=y.example==z@example.org>\r\nDATA\r\nDelivered-To: a@example.org\r\nReceived: x\r\n\r\n.\r\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		st := &fuzzStore{}
		srv, err := New(Config{
			Config:         frontend.Config{Hostname: "mx.example.org", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
			MaxMessageSize: 4096, MaxHeaderBytes: 1024, MaxErrors: 50,
			CommandTimeout: 30 * time.Millisecond, DataTimeout: 30 * time.Millisecond,
		}, st, nil)
		if err != nil {
			t.Fatal(err)
		}
		cli, server := net.Pipe()
		ln := &pipeListener{ch: make(chan net.Conn, 1), done: make(chan struct{})}
		ln.ch <- server
		served := make(chan error, 1)
		go func() { served <- srv.ServeInbound(ln) }()
		readDone := make(chan struct{})
		go func() {
			_, _ = io.Copy(io.Discard, cli)
			close(readDone)
		}()
		_ = cli.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, _ = cli.Write(input)
		select {
		case <-readDone: // the server closed the connection (QUIT, error, timeout)
		case <-time.After(5 * time.Second):
			t.Fatalf("server hung on %q", input)
		}
		cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Fatalf("shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Fatalf("serve: %v", err)
		}
		for _, b := range st.bodies {
			if _, err := refScan(b, 1<<30); err != nil {
				t.Fatalf("delivered a message with %v from input %q:\n%q", err, input, b)
			}
		}
	})
}

func TestPunycode(t *testing.T) {
	for in, want := range map[string]string{
		"bücher.example": "xn--bcher-kva.example", "MÜNCHEN.de": "xn--mnchen-3ya.de",
		"例え.テスト": "xn--r8jz45g.xn--zckzah", "ascii.example": "ascii.example",
	} {
		got, err := asciiDomain(in)
		if err != nil || got != want {
			t.Errorf("asciiDomain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
