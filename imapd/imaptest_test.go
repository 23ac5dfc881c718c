package imapd

import (
	"context"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestImaptest runs Dovecot's imaptest compliance scripts against the
// server when IMAPTEST_BIN (the imaptest binary) and IMAPTEST_DIR (its
// tests directory) are set. imaptest is an outside tool, built separately;
// nothing of it is part of this repository. Each script is run on its own
// so that one failure does not hide the others:
//
//	IMAPTEST_BIN=/tmp/imaptest/src/imaptest IMAPTEST_DIR=/tmp/imaptest/tests \
//	  go test -run TestImaptest -v ./imapd/
func TestImaptest(t *testing.T) {
	bin, dir := os.Getenv("IMAPTEST_BIN"), os.Getenv("IMAPTEST_DIR")
	if bin == "" || dir == "" {
		t.Skip("set IMAPTEST_BIN and IMAPTEST_DIR to run Dovecot's imaptest scripts")
	}
	e := newEnv(t, func(c *Config) { c.MaxConnsPerAccount, c.MaxConnsPerIP = -1, 0 })
	e.addAccount("imaptest")
	// imaptest logs user2 in with the one pass= it is given.
	e.addAccountPassword("imaptest2", "pw-imaptest")
	host, port, _ := net.SplitHostPort(e.addr)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range entries {
		name := de.Name()
		if de.IsDir() || len(name) > 5 && name[len(name)-5:] == ".mbox" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "host="+host, "port="+port,
				"user=imaptest@example.org", "user2=imaptest2@example.org", "pass=pw-imaptest",
				"test="+dir+"/"+name)
			out, err := cmd.CombinedOutput()
			t.Logf("%s", out)
			if err != nil {
				t.Errorf("imaptest: %v", err)
			}
		})
	}
}

// TestImaptestStress runs imaptest's random stress mode (several clients
// on one mailbox, with state tracking) when IMAPTEST_BIN and
// IMAPTEST_MBOX are set.
func TestImaptestStress(t *testing.T) {
	bin, mbox := os.Getenv("IMAPTEST_BIN"), os.Getenv("IMAPTEST_MBOX")
	if bin == "" || mbox == "" {
		t.Skip("set IMAPTEST_BIN and IMAPTEST_MBOX")
	}
	e := newEnv(t, func(c *Config) { c.MaxConnsPerAccount, c.MaxConnsPerIP = -1, 0 })
	e.addAccount("imaptest")
	host, port, _ := net.SplitHostPort(e.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "host="+host, "port="+port, "user=imaptest@example.org", "pass=pw-imaptest",
		"mbox="+mbox, "clients=10", "secs=30").CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Error(err)
	}
}
