package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/postrider/postrider/auth"
	"github.com/postrider/postrider/internal/config"
	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/mailstore/postgres"
)

const adminTimeout = 2 * time.Minute

func cmdConfig(args []string, stdout io.Writer) error {
	if len(args) == 1 && args[0] == "-markdown" {
		fmt.Fprint(stdout, configMarkdown())
		return nil
	}
	if len(args) != 0 {
		return usageErr("usage: postrider config [-markdown]")
	}
	// The values in effect: what serve would use with this environment.
	cfg, err := config.Load()
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tVALUE\tDEFAULT\tMEANING")
	empty := func(s string) string {
		if s == "" {
			return "(empty)"
		}
		return s
	}
	for _, v := range cfg.Effect() {
		val := empty(v.Value)
		if v.Set {
			val += " (set)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", v.Name, val, empty(v.Default), v.Meaning)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, name := range config.UnknownVariables(os.Environ()) {
		fmt.Fprintf(stdout, "\nwarning: %s is not a Postrider variable and is ignored\n", name)
	}
	return nil
}

// configMarkdown renders the variables as the README's table.
func configMarkdown() string {
	var b strings.Builder
	b.WriteString("| Variable | Default | Meaning |\n|---|---|---|\n")
	for _, v := range config.Variables() {
		d := "`" + v.Default + "`"
		if v.Default == "" {
			d = "empty"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", v.Name, d, strings.ReplaceAll(v.Meaning, "|", "\\|"))
	}
	return b.String()
}

func loadConfig() (*config.Config, error) {
	cfg, err := config.Load()
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	if cfg.DatabaseURL == "" {
		return nil, &exitError{code: 2, err: errors.New("POSTRIDER_DATABASE_URL is not set: Postrider needs a PostgreSQL database (the embedded store is not available yet)")}
	}
	return cfg, nil
}

// openAdminStore opens the store for an admin command, applying pending
// migrations first so that a fresh database works at once.
func openAdminStore(ctx context.Context) (*postgres.Store, error) {
	cfg, err := loadConfig()
	if err != nil {
		return nil, err
	}
	if err := postgres.Migrate(ctx, cfg.DatabaseURL); err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	st, err := postgres.Open(ctx, cfg.DatabaseURL, postgres.Options{MaxConns: 4})
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	return st, nil
}

func cmdMigrate(args []string, stdout io.Writer) error {
	if len(args) != 0 {
		return usageErr("usage: postrider migrate")
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := postgres.Migrate(ctx, cfg.DatabaseURL); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	fmt.Fprintln(stdout, "database schema is current")
	return nil
}

func cmdDomain(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageErr("usage: postrider domain add|remove DOMAIN | domain list")
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	sub, rest := args[0], args[1:]
	rest, err := aLabelArgs(rest)
	if err != nil {
		return err
	}
	want := 1
	if sub == "list" {
		want = 0
	}
	if len(rest) != want {
		return usageErr("usage: postrider domain add|remove DOMAIN | domain list")
	}
	switch sub {
	case "add", "remove", "list":
	default:
		return usageErr("unknown domain command %q (add, remove, list)", sub)
	}
	st, err := openAdminStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	switch sub {
	case "add":
		if err := st.CreateDomain(ctx, rest[0]); err != nil {
			return fmt.Errorf("domain add %s: %w", rest[0], err)
		}
		fmt.Fprintf(stdout, "domain %s added\n", strings.ToLower(rest[0]))
	case "remove":
		if err := st.DeleteDomain(ctx, rest[0]); err != nil {
			return fmt.Errorf("domain remove %s: %w", rest[0], err)
		}
		fmt.Fprintf(stdout, "domain %s removed\n", strings.ToLower(rest[0]))
	case "list":
		ds, err := st.ListDomains(ctx)
		if err != nil {
			return err
		}
		for _, d := range ds {
			fmt.Fprintln(stdout, d)
		}
	}
	return nil
}

func cmdUser(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	const u = "usage: postrider user add|passwd|remove ADDRESS | user list [DOMAIN] | user quota ADDRESS [SIZE] [--messages N]"
	if len(args) == 0 {
		return usageErr(u)
	}
	sub, rest := args[0], args[1:]
	msgLimit := int64(-1) // -1: not given
	if sub == "quota" {
		var err error
		if msgLimit, rest, err = messagesFlag(rest, u); err != nil {
			return err
		}
	}
	rest, err := aLabelArgs(rest)
	if err != nil {
		return err
	}
	switch sub {
	case "add", "passwd", "remove":
		if len(rest) != 1 {
			return usageErr(u)
		}
	case "list":
		if len(rest) > 1 {
			return usageErr(u)
		}
	case "quota":
		// The size may be left out when --messages is given.
		if len(rest) != 2 && (len(rest) != 1 || msgLimit < 0) {
			return usageErr(u)
		}
	default:
		return usageErr("unknown user command %q (add, passwd, remove, list, quota)", sub)
	}
	// Validate and read everything before touching the database, so that
	// nothing is half-written on error.
	var addr, hash string
	var quota config.Size
	if sub != "list" {
		a, err := mailstore.NormalizeAddress(rest[0])
		if err != nil {
			return &exitError{code: 1, err: fmt.Errorf("%s: %w", rest[0], err)}
		}
		addr = a
	}
	quotaGiven := sub == "quota" && len(rest) == 2
	if quotaGiven {
		if rest[1] == "0" {
			quota = 0
		} else if err := quota.UnmarshalText([]byte(rest[1])); err != nil {
			return usageErr("quota: %v", err)
		}
	}
	if sub == "add" || sub == "passwd" {
		pw, err := readPassword(stdin, stderr)
		if err != nil {
			return err
		}
		if hash, err = auth.HashPassword(pw); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	st, err := openAdminStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	switch sub {
	case "add":
		if _, err := st.CreateAccount(ctx, addr, hash); err != nil {
			return fmt.Errorf("user add %s: %w", addr, err)
		}
		fmt.Fprintf(stdout, "user %s added\n", addr)
	case "passwd":
		acc, err := st.GetAccount(ctx, addr)
		if err != nil {
			return fmt.Errorf("user passwd %s: %w", addr, err)
		}
		if err := st.SetPasswordHash(ctx, acc.ID, hash); err != nil {
			return fmt.Errorf("user passwd %s: %w", addr, err)
		}
		fmt.Fprintf(stdout, "password of %s changed\n", addr)
	case "remove":
		if err := st.DeleteAccount(ctx, addr); err != nil {
			return fmt.Errorf("user remove %s: %w", addr, err)
		}
		fmt.Fprintf(stdout, "user %s removed\n", addr)
	case "quota":
		acc, err := st.GetAccount(ctx, addr)
		if err != nil {
			return fmt.Errorf("user quota %s: %w", addr, err)
		}
		if quotaGiven {
			if err := st.SetQuota(ctx, acc.ID, int64(quota)); err != nil {
				return fmt.Errorf("user quota %s: %w", addr, err)
			}
			fmt.Fprintf(stdout, "quota of %s set to %s\n", addr, humanSize(int64(quota)))
		}
		if msgLimit >= 0 {
			if err := st.SetMessageQuota(ctx, acc.ID, msgLimit); err != nil {
				return fmt.Errorf("user quota %s: %w", addr, err)
			}
			fmt.Fprintf(stdout, "message limit of %s set to %d\n", addr, msgLimit)
		}
	case "list":
		dom := ""
		if len(rest) == 1 {
			dom = rest[0]
		}
		accs, err := st.ListAccounts(ctx, dom)
		if err != nil {
			return fmt.Errorf("user list: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ADDRESS\tUSED\tQUOTA\tMESSAGES\tMESSAGE LIMIT")
		for _, a := range accs {
			q, err := st.Quota(ctx, a.ID)
			if err != nil {
				return err
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\n", a.Address, humanSize(q.StorageUsed), humanSize(q.StorageLimit),
				q.MessagesUsed, q.MessagesLimit)
		}
		return tw.Flush()
	}
	return nil
}

// messagesFlag takes --messages N (or --messages=N, one dash or two) out
// of the arguments of `user quota`, anywhere among them: the limit on the
// number of messages (0 = unlimited), or -1 when not given.
func messagesFlag(args []string, usage string) (int64, []string, error) {
	n := int64(-1)
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			rest = append(rest, a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		if name != "messages" {
			return 0, nil, usageErr("unknown flag %s (%s)", a, usage)
		}
		if n >= 0 {
			return 0, nil, usageErr("--messages given twice")
		}
		if !hasVal {
			if i+1 == len(args) {
				return 0, nil, usageErr("--messages needs a number, e.g. --messages 100000")
			}
			i++
			val = args[i]
		}
		v, err := strconv.ParseInt(val, 10, 64)
		if err != nil || v < 0 {
			return 0, nil, usageErr("--messages: %q is not a number of messages (0 = unlimited)", val)
		}
		n = v
	}
	return n, rest, nil
}

func humanSize(n int64) string {
	switch {
	case n == 0:
		return "0"
	case n%(1<<30) == 0:
		return fmt.Sprintf("%dG", n>>30)
	case n%(1<<20) == 0:
		return fmt.Sprintf("%dM", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1fM", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fK", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d", n)
}

// maxPasswordLen matches what the auth module accepts at login.
const maxPasswordLen = 1024

// readPassword reads one line from stdin, or prompts twice without echo when
// stdin is a terminal.
func readPassword(stdin io.Reader, stderr io.Writer) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(stderr, "Password: ")
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return "", err
		}
		fmt.Fprint(stderr, "Repeat password: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return "", err
		}
		if string(a) != string(b) {
			return "", errors.New("passwords do not match")
		}
		return checkPassword(string(a))
	}
	line, err := bufio.NewReaderSize(stdin, maxPasswordLen+2).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", errors.New("no password on standard input (give one line)")
	}
	return checkPassword(strings.TrimRight(line, "\r\n"))
}

func checkPassword(pw string) (string, error) {
	switch {
	case strings.TrimSpace(pw) == "":
		return "", errors.New("empty password (or only white space)")
	case len(pw) > maxPasswordLen:
		return "", fmt.Errorf("password longer than %d bytes", maxPasswordLen)
	case strings.ContainsAny(pw, "\x00\r\n"):
		return "", errors.New("password contains a control character")
	}
	return pw, nil
}

func cmdAlias(args []string, stdout io.Writer) error {
	const u = "usage: postrider alias add ALIAS TARGET | alias remove ALIAS [TARGET] | alias list [DOMAIN]"
	if len(args) == 0 {
		return usageErr(u)
	}
	sub, rest := args[0], args[1:]
	rest, err := aLabelArgs(rest)
	if err != nil {
		return err
	}
	switch {
	case sub == "add" && len(rest) == 2, sub == "remove" && (len(rest) == 1 || len(rest) == 2), sub == "list" && len(rest) <= 1:
	case sub != "add" && sub != "remove" && sub != "list":
		return usageErr("unknown alias command %q (add, remove, list)", sub)
	default:
		return usageErr(u)
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	st, err := openAdminStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	switch sub {
	case "add":
		if err := st.CreateAlias(ctx, rest[0], rest[1]); err != nil {
			return fmt.Errorf("alias add %s %s: %w", rest[0], rest[1], err)
		}
		// The target as given: an external address keeps its local part's case.
		fmt.Fprintf(stdout, "alias %s -> %s added\n", strings.ToLower(rest[0]), rest[1])
	case "remove":
		target := ""
		if len(rest) == 2 {
			target = rest[1]
		}
		if err := st.DeleteAlias(ctx, rest[0], target); err != nil {
			return fmt.Errorf("alias remove %s: %w", rest[0], err)
		}
		fmt.Fprintf(stdout, "alias %s removed\n", strings.ToLower(rest[0]))
	case "list":
		dom := ""
		if len(rest) == 1 {
			dom = rest[0]
		}
		as, err := st.ListAliases(ctx, dom)
		if err != nil {
			return fmt.Errorf("alias list: %w", err)
		}
		for _, a := range as {
			fmt.Fprintf(stdout, "%s\t%s\n", a.Alias, a.Target)
		}
	}
	return nil
}
