package smtpd

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/frontend"
)

// BenchmarkIngest measures the wire layer: messages sent over 127.0.0.1
// on one connection (MAIL, RCPT, then DATA or BDAT, pipelined) into an
// in-memory store, so that the database is out of the figure.
//
//	go test -run XXX -bench Ingest -benchmem ./smtpd/
func BenchmarkIngest(b *testing.B) {
	line := strings.Repeat("0123456789abcdefghij", 3) + "\r\n"           // 62 octets
	msg := "Subject: bench\r\n\r\n" + strings.Repeat(line+"."+line, 512) // ~64 KB, half the lines stuffed
	unstuffed := strings.ReplaceAll(msg, "\r\n.", "\r\n")
	for _, mode := range []string{"DATA", "BDAT"} {
		b.Run(mode, func(b *testing.B) {
			srv, err := New(Config{
				Config:         frontend.Config{Hostname: "mx.example.org", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
				MaxMessageSize: 1 << 20,
			}, &fuzzStore{}, nil)
			if err != nil {
				b.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go srv.ServeInbound(ln)
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(ctx)
			}()
			nc, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			r := bufio.NewReader(nc)
			expect := func(code string) {
				for {
					l, err := r.ReadString('\n')
					if err != nil || !strings.HasPrefix(l, code) {
						b.Fatalf("want %s, got %q %v", code, l, err)
					}
					if l[3] == ' ' {
						return
					}
				}
			}
			expect("220")
			fmt.Fprintf(nc, "EHLO bench.example\r\n")
			expect("250")
			b.SetBytes(int64(len(msg)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if mode == "DATA" {
					fmt.Fprintf(nc, "MAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
					expect("250")
					expect("250")
					expect("354")
					io.WriteString(nc, msg+".\r\n")
				} else {
					fmt.Fprintf(nc, "MAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.org>\r\nBDAT %d LAST\r\n%s", len(unstuffed), unstuffed)
					expect("250")
					expect("250")
				}
				expect("250")
			}
		})
	}
}
