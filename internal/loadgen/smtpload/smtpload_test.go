package smtpload

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	smtp "github.com/emersion/go-smtp"
)

// sink is a go-smtp backend that records message sizes.
type sink struct {
	mu    sync.Mutex
	sizes []int
	bad   int
}

func (s *sink) NewSession(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s}, nil }

type sinkSession struct{ s *sink }

func (*sinkSession) Reset()                                    {}
func (*sinkSession) Logout() error                             { return nil }
func (*sinkSession) Mail(string, *smtp.MailOptions) error      { return nil }
func (*sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error { return nil }
func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	ss.s.sizes = append(ss.s.sizes, len(b))
	if !bytes.HasSuffix(b, []byte("\r\n")) || bytes.Contains(bytes.ReplaceAll(b, []byte("\r\n"), nil), []byte("\n")) {
		ss.s.bad++
	}
	return nil
}

func TestRun(t *testing.T) {
	for _, noChunking := range []bool{false, true} {
		be := &sink{}
		srv := smtp.NewServer(be)
		srv.Domain = "sink.test"
		srv.AllowInsecureAuth = true
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(ln)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		res, err := Run(ctx, Options{Addr: ln.Addr().String(), Sessions: 3, Messages: 50, Size: 10240,
			From: "a@load.test", To: "b@load.test", NoChunking: noChunking})
		cancel()
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		wantMode := "BDAT"
		if noChunking {
			wantMode = "DATA"
		}
		if res.Sent != 50 || res.Failed != 0 || res.Mode != wantMode || res.PerSecond <= 0 {
			t.Fatalf("result %+v", res)
		}
		be.mu.Lock()
		if len(be.sizes) != 50 || be.bad != 0 {
			t.Fatalf("server got %d messages, %d malformed", len(be.sizes), be.bad)
		}
		for _, n := range be.sizes {
			if n != 10240 {
				t.Fatalf("message of %d octets, want 10240", n)
			}
		}
		be.mu.Unlock()
		t.Log(res)
	}
}

// authSink accepts mail only from sessions that logged in as u/p.
type authSink struct {
	sink
	logins int
}

func (s *authSink) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &authSession{sinkSession: sinkSession{s: &s.sink}, a: s}, nil
}

type authSession struct {
	sinkSession
	a    *authSink
	user bool
}

func (*authSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (as *authSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if identity != "" || user != "u@load.test" || pass != "secret" {
			return errors.New("bad credentials")
		}
		as.a.mu.Lock()
		as.a.logins++
		as.a.mu.Unlock()
		as.user = true
		return nil
	}), nil
}
func (as *authSession) Mail(string, *smtp.MailOptions) error {
	if !as.user {
		return &smtp.SMTPError{Code: 530, Message: "auth first"}
	}
	return nil
}

func TestRunWithAuth(t *testing.T) {
	be := &authSink{}
	srv := smtp.NewServer(be)
	srv.Domain = "sink.test"
	srv.AllowInsecureAuth = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := Options{Addr: ln.Addr().String(), Sessions: 2, Messages: 10, Size: 2048,
		From: "u@load.test", To: "b@remote.test", Username: "u@load.test", Password: "secret"}
	res, err := Run(ctx, o)
	if err != nil || res.Sent != 10 {
		t.Fatalf("with the right password: %+v, %v", res, err)
	}
	be.mu.Lock()
	if be.logins != 2 || len(be.sizes) != 10 {
		t.Fatalf("server saw %d logins and %d messages, want 2 and 10", be.logins, len(be.sizes))
	}
	be.mu.Unlock()
	o.Password = "wrong"
	if _, err := Run(ctx, o); err == nil || !strings.Contains(err.Error(), "AUTH") {
		t.Fatalf("with a wrong password: err %v, want an AUTH failure", err)
	}
}
