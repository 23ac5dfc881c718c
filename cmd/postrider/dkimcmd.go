package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/postrider/postrider/internal/dkimkeys"
	"github.com/postrider/postrider/internal/zonerecords"
	"github.com/postrider/postrider/mailstore"
)

const dkimUsage = "usage: postrider dkim generate|rotate DOMAIN | dkim list [DOMAIN] | dkim remove DOMAIN SELECTOR"

// dkimStore is what the dkim and dns commands use.
type dkimStore interface {
	mailstore.DKIMKeys
	IsLocalDomain(ctx context.Context, name string) (bool, error)
	ResolveRecipient(ctx context.Context, address string) ([]mailstore.Account, error)
}

func cmdDKIM(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageErr(dkimUsage)
	}
	sub, rest := args[0], args[1:]
	rest, err := aLabelArgs(rest)
	if err != nil {
		return err
	}
	switch {
	case (sub == "generate" || sub == "rotate") && len(rest) == 1,
		sub == "list" && len(rest) <= 1, sub == "remove" && len(rest) == 2:
	case sub != "generate" && sub != "rotate" && sub != "list" && sub != "remove":
		return usageErr("unknown dkim command %q (generate, rotate, list, remove)", sub)
	default:
		return usageErr(dkimUsage)
	}
	domain := ""
	if len(rest) > 0 {
		domain = strings.TrimSuffix(strings.ToLower(rest[0]), ".")
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	st, closeStore, err := openOpsStore(ctx)
	if err != nil {
		return err
	}
	defer closeStore()
	if domain != "" {
		if err := checkLocal(ctx, st, domain); err != nil {
			return err
		}
	}
	now := time.Now().UTC()
	switch sub {
	case "generate":
		return dkimGenerate(ctx, st, domain, now, stdout)
	case "rotate":
		return dkimRotate(ctx, st, domain, now, stdout)
	case "list":
		return dkimList(ctx, st, domain, stdout)
	case "remove":
		return dkimRemove(ctx, st, domain, strings.ToLower(rest[1]), stdout)
	}
	return nil
}

// checkLocal refuses a domain that is not one of ours: we sign, and
// publish records, only for local domains.
func checkLocal(ctx context.Context, st dkimStore, domain string) error {
	ok, err := st.IsLocalDomain(ctx, domain)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s is not a local domain (see `postrider domain list`; add it with `postrider domain add %s`)", domain, domain)
	}
	return nil
}

func dkimGenerate(ctx context.Context, st dkimStore, domain string, now time.Time, stdout io.Writer) error {
	keys, err := st.ListDKIMKeys(ctx, domain)
	if err != nil {
		return err
	}
	if active := dkimkeys.Active(keys); len(active) > 0 {
		return fmt.Errorf("%s already signs with %s: use `postrider dkim rotate %s` for new keys", domain, selectors(active), domain)
	}
	pair, err := addPair(ctx, st, domain, now, keys)
	if err != nil {
		return err
	}
	note(stdout, "DKIM keys for %s created: %s.\nMail from %s is signed with both from now on (RFC 8463 §3).", domain, describe(pair), domain)
	note(stdout, "Publish these records in the zone of %s (until they are, receivers treat the mail as\nunsigned); `postrider dns %s` prints them with every other record the domain needs:", domain, domain)
	return printRecords(pair, stdout)
}

// dkimRotate replaces the domain's signing keys: a new pair signs from
// now on and the active keys are retired, listed still so that their
// records stay published while mail signed with them may be verified.
// The signer uses the newest active key of each algorithm, so a new key
// that did not replace the old ones would sign alone all the same: the
// switch is made at once, and the admin told to publish first thing.
func dkimRotate(ctx context.Context, st dkimStore, domain string, now time.Time, stdout io.Writer) error {
	keys, err := st.ListDKIMKeys(ctx, domain)
	if err != nil {
		return err
	}
	active := dkimkeys.Active(keys)
	pair, err := addPair(ctx, st, domain, now, keys)
	if err != nil {
		return err
	}
	keep := []string{pair[0].Selector, pair[1].Selector}
	if err := st.RetireDKIMKeys(ctx, domain, keep, now); err != nil {
		return fmt.Errorf("dkim rotate %s: new keys %s stored, but the old ones could not be retired (run the command again): %w", domain, strings.Join(keep, ", "), err)
	}
	note(stdout, "New DKIM keys for %s: %s.\nThey sign its mail from now on (on every node within a minute).", domain, describe(pair))
	note(stdout, "Publish these records now; until they resolve, receivers cannot check the new signatures\nand DMARC rests on SPF alone:")
	if err := printRecords(pair, stdout); err != nil {
		return err
	}
	if len(active) == 0 {
		return nil
	}
	until := now.Add(dkimkeys.KeepRetired).Format("2006-01-02")
	note(stdout, "Retired %s: they no longer sign. Keep their DNS records until %s (mail signed\nwith them may still be queued or in transit and is checked against them); then delete\nthe records and run:", selectors(active), until)
	for _, k := range active {
		note(stdout, "  postrider dkim remove %s %s", domain, k.Selector)
	}
	return nil
}

func dkimList(ctx context.Context, st dkimStore, domain string, stdout io.Writer) error {
	keys, err := st.ListDKIMKeys(ctx, domain)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		if domain == "" {
			note(stdout, "no DKIM keys (create them with `postrider dkim generate DOMAIN`)")
		} else {
			note(stdout, "%s has no DKIM keys (create them with `postrider dkim generate %s`)", domain, domain)
		}
		return nil
	}
	for _, k := range keys {
		state := "active"
		if !k.RetiredAt.IsZero() {
			state = fmt.Sprintf("retired %s, keep its record until %s", k.RetiredAt.UTC().Format("2006-01-02"),
				k.RetiredAt.Add(dkimkeys.KeepRetired).UTC().Format("2006-01-02"))
		}
		note(stdout, "%s\t%s\t%s\tcreated %s\t%s", k.Domain, k.Selector, k.Algorithm, k.CreatedAt.UTC().Format("2006-01-02"), state)
		rec, err := zonerecords.KeyRecord(k)
		if err != nil {
			return err
		}
		fmt.Fprint(stdout, rec)
	}
	return nil
}

func dkimRemove(ctx context.Context, st dkimStore, domain, selector string, stdout io.Writer) error {
	keys, err := st.ListDKIMKeys(ctx, domain)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if k.Selector != selector {
			continue
		}
		if k.RetiredAt.IsZero() {
			return fmt.Errorf("DKIM key %s of %s still signs: replace it with `postrider dkim rotate %s` before removing it", selector, domain, domain)
		}
		if err := st.DeleteDKIMKey(ctx, domain, selector); err != nil {
			return fmt.Errorf("dkim remove %s %s: %w", domain, selector, err)
		}
		fmt.Fprintf(stdout, "DKIM key %s of %s removed; delete its DNS record %s too\n", selector, domain, fqdnOf(dkimkeys.RecordName(selector, domain)))
		return nil
	}
	return fmt.Errorf("%s has no DKIM key %s (see `postrider dkim list %s`)", domain, selector, domain)
}

// addPair stores a new Ed25519 and RSA key for domain. Selectors are
// picked unused; should a concurrent command take one first, new ones are
// picked again.
func addPair(ctx context.Context, st dkimStore, domain string, now time.Time, keys []mailstore.DKIMKey) ([]mailstore.DKIMKey, error) {
	for attempt := 0; ; attempt++ {
		taken := make([]string, len(keys))
		for i, k := range keys {
			taken[i] = k.Selector
		}
		pair, err := dkimkeys.NewPair(domain, now, taken)
		if err != nil {
			return nil, err
		}
		var added []mailstore.DKIMKey
		for _, k := range pair {
			if err = st.AddDKIMKey(ctx, k); err != nil {
				break
			}
			added = append(added, k)
		}
		if err == nil {
			return pair, nil
		}
		for _, k := range added {
			_ = st.DeleteDKIMKey(ctx, domain, k.Selector)
		}
		if !errors.Is(err, mailstore.ErrExists) || attempt == 2 {
			return nil, fmt.Errorf("dkim: store key of %s: %w", domain, err)
		}
		if keys, err = st.ListDKIMKeys(ctx, domain); err != nil {
			return nil, err
		}
	}
}

func printRecords(keys []mailstore.DKIMKey, stdout io.Writer) error {
	for _, k := range keys {
		rec, err := zonerecords.KeyRecord(k)
		if err != nil {
			return err
		}
		fmt.Fprint(stdout, rec)
	}
	return nil
}

// note writes text as zone-file comments, so that the whole output can be
// pasted into a zone.
func note(w io.Writer, format string, a ...any) {
	for _, l := range strings.Split(fmt.Sprintf(format, a...), "\n") {
		fmt.Fprintln(w, "; "+l)
	}
}

func describe(keys []mailstore.DKIMKey) string {
	s := make([]string, len(keys))
	for i, k := range keys {
		s[i] = k.Selector + " (" + k.Algorithm + ")"
	}
	return strings.Join(s, " and ")
}

func selectors(keys []mailstore.DKIMKey) string {
	s := make([]string, len(keys))
	for i, k := range keys {
		s[i] = k.Selector
	}
	return strings.Join(s, ", ")
}

func fqdnOf(s string) string { return strings.TrimSuffix(s, ".") + "." }
