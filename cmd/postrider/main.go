// Command postrider is the Postrider mail server: SMTP, IMAP and POP3 over
// one PostgreSQL mail store, plus the administration commands. Everything is
// configured through POSTRIDER_* environment variables (`postrider config`).
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

const usage = `Postrider — SMTP, IMAP and POP3 in one binary over one PostgreSQL store.

Usage:
  postrider serve                         run the servers (migrates the database first)
  postrider migrate                       apply database migrations and exit
  postrider config [-markdown]            print every environment variable, default and meaning
  postrider domain add|remove DOMAIN      manage local domains
  postrider domain list
  postrider user add ADDRESS              create an account (password from stdin, one line,
                                          or prompted on a terminal)
  postrider user passwd ADDRESS           change an account's password (same input)
  postrider user remove ADDRESS           delete an account and all its mail
  postrider user list [DOMAIN]            list accounts with quota usage
  postrider user quota ADDRESS [SIZE] [--messages N]
                                          set the storage limit (bytes, or 500M, 2G; 0 = unlimited)
                                          and/or the limit on the number of messages (0 = unlimited)
  postrider alias add ALIAS TARGET        deliver ALIAS (local@domain, or @domain for a
                                          catch-all) to TARGET: an account, or an external
                                          address that mail is forwarded to (SRS)
  postrider alias remove ALIAS [TARGET]   remove one mapping, or all of ALIAS
  postrider alias list [DOMAIN]
  postrider queue list                    outbound queue: an item per line
  postrider queue show ID                 one item, every recipient's state and last reply
  postrider queue retry ID... | flush     make items (flush: every item) due now
  postrider queue remove ID...            delete items without a bounce
  postrider dkim generate DOMAIN          create the domain's DKIM keys (Ed25519 and RSA)
  postrider dkim rotate DOMAIN            new keys, to publish now; they take over from the
                                          current ones in 72 hours (--sign-after DURATION
                                          sets the delay, e.g. 48h or 5d; 0: at once)
  postrider dkim list [DOMAIN]            keys, their state and DNS records
  postrider dkim remove DOMAIN SELECTOR   delete a superseded or retired key
  postrider dns DOMAIN                    every DNS record the domain needs, in zone-file syntax
  postrider selfsigned                    write a self-signed certificate for POSTRIDER_HOSTNAME
                                          to POSTRIDER_DATA_DIR unless a valid one is there (what
                                          serve does without TLS files), to share between nodes
  postrider healthcheck [--live]          exit 0 if this host's node answers /readyz (--live:
                                          /healthz) on POSTRIDER_HTTP_ADDR with 200; for
                                          container health checks
  postrider bench smtp [flags]            SMTP load test against a running server (see -h)
  postrider version

Configuration is read from POSTRIDER_* environment variables; see
'postrider config'. Errors go to stderr with a non-zero exit code.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitError carries an exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func usageErr(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}

func main() {
	err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	if err == nil {
		return
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	fmt.Fprintf(os.Stderr, "postrider: %v\n", err)
	os.Exit(code)
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &exitError{code: 2, err: errors.New("no command given")}
	}
	cmd, rest := args[0], args[1:]
	if cmd != "bench" { // bench has its own flags and -h
		for _, a := range rest {
			if a == "-h" || a == "--help" {
				fmt.Fprint(stdout, usage)
				return nil
			}
		}
	}
	switch cmd {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	case "version", "--version":
		fmt.Fprintln(stdout, "postrider", version)
		return nil
	case "config":
		return cmdConfig(rest, stdout)
	case "serve":
		return cmdServe(rest)
	case "migrate":
		return cmdMigrate(rest, stdout)
	case "domain":
		return cmdDomain(rest, stdout)
	case "user":
		return cmdUser(rest, stdin, stdout, stderr)
	case "alias":
		return cmdAlias(rest, stdout)
	case "bench":
		return cmdBench(rest, stdout, stderr)
	case "queue":
		return cmdQueue(rest, stdout)
	case "dkim":
		return cmdDKIM(rest, stdout, stderr)
	case "dns":
		return cmdDNS(rest, stdout, stderr)
	case "selfsigned":
		return cmdSelfsigned(rest, stdout)
	case "healthcheck":
		return cmdHealthcheck(rest, stdout)
	}
	fmt.Fprint(stderr, usage)
	return usageErr("unknown command %q", cmd)
}
