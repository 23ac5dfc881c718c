package imapd

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
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
// IMAPTEST_MBOX are set: once with logins in the loop and once with the
// sessions kept open (logout=0) and checkpoints, where every client's view
// of flags and messages is compared at once. imaptest reports a state
// mismatch as an "Error:" line without failing, so the output is checked.
func TestImaptestStress(t *testing.T) {
	bin, mbox := os.Getenv("IMAPTEST_BIN"), os.Getenv("IMAPTEST_MBOX")
	if bin == "" || mbox == "" {
		t.Skip("set IMAPTEST_BIN and IMAPTEST_MBOX")
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"logins", nil},
		{"sessions-open", []string{"logout=0", "checkpoint=3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.MaxConnsPerAccount, c.MaxConnsPerIP = -1, 0 })
			e.addAccount("imaptest")
			host, port, _ := net.SplitHostPort(e.addr)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			args := append([]string{"host=" + host, "port=" + port, "user=imaptest@example.org", "pass=pw-imaptest",
				"mbox=" + mbox, "clients=10", "secs=20"}, tc.args...)
			out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
			t.Logf("%s", out)
			if err != nil {
				t.Error(err)
			}
			for _, line := range strings.Split(string(out), "\n") {
				if strings.Contains(line, "Error:") || strings.Contains(line, "Panic:") || strings.Contains(line, "Fatal:") {
					t.Errorf("imaptest reported: %s", line)
				}
			}
		})
	}
}
