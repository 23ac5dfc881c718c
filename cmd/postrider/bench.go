package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/postrider/postrider/internal/loadgen/smtpload"
)

func cmdBench(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "smtp" {
		return usageErr("usage: postrider bench smtp [-addr host:port] [-sessions N] [-messages N] [-size BYTES] [-from ADDR] -to ADDR [-data] [-user NAME -pass PASSWORD]")
	}
	fs := flag.NewFlagSet("bench smtp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:25", "SMTP server address (loopback only)")
	sessions := fs.Int("sessions", 10, "concurrent SMTP sessions")
	messages := fs.Int("messages", 10000, "messages to send in all")
	size := fs.Int("size", 10240, "message size in bytes")
	from := fs.String("from", "bench@example.net", "envelope sender")
	to := fs.String("to", "", "recipient (a local address of the server)")
	data := fs.Bool("data", false, "send with DATA instead of BDAT (CHUNKING)")
	user := fs.String("user", "", "log each session in with AUTH PLAIN as this user (a submission load)")
	pass := fs.String("pass", "", "password for -user (a benchmark account's: it shows in the process list)")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	if err := fs.Parse(args[1:]); err != nil {
		return usageErr("%v", err)
	}
	if *to == "" {
		return usageErr("bench smtp: -to is required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	res, err := smtpload.Run(ctx, smtpload.Options{
		Addr: *addr, Sessions: *sessions, Messages: *messages, Size: *size, From: *from, To: *to, NoChunking: *data,
		Username: *user, Password: *pass,
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, res.String())
	return nil
}
