package smtpload

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

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
