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
	"github.com/postrider/postrider/mailauth"
	"github.com/postrider/postrider/mailstore"
)

const dkimUsage = "usage: postrider dkim generate DOMAIN | dkim rotate [--sign-after DURATION] DOMAIN | dkim list [DOMAIN] | dkim remove DOMAIN SELECTOR"

// dkimStore is what the dkim and dns commands use.
type dkimStore interface {
	mailstore.DKIMKeys
	IsLocalDomain(ctx context.Context, name string) (bool, error)
	ResolveRecipient(ctx context.Context, address string) ([]mailstore.Account, error)
}

func cmdDKIM(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageErr(dkimUsage)
	}
	sub, rest := args[0], args[1:]
	signAfter, rest, err := signAfterFlag(sub, rest)
	if err != nil {
		return err
	}
	rest, err = aLabelArgs(rest)
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
	// To the microsecond, as the store keeps times: what is printed is
	// what is stored.
	now := time.Now().UTC().Truncate(time.Microsecond)
	switch sub {
	case "generate":
		return dkimGenerate(ctx, st, domain, now, stdout)
	case "rotate":
		return dkimRotate(ctx, st, domain, now, signAfter, stdout)
	case "list":
		return dkimList(ctx, st, domain, now, stdout)
	case "remove":
		return dkimRemove(ctx, st, domain, strings.ToLower(rest[1]), now, stdout, stderr)
	}
	return nil
}

// signAfterFlag takes --sign-after DURATION (or --sign-after=DURATION,
// one dash or two) out of the arguments of `dkim rotate`, anywhere among
// them; the default is dkimkeys.DefaultSignAfter. Other commands take no
// flags.
func signAfterFlag(sub string, args []string) (time.Duration, []string, error) {
	d, seen := dkimkeys.DefaultSignAfter, false
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			rest = append(rest, a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		if name != "sign-after" || sub != "rotate" {
			return 0, nil, usageErr("unknown flag %s (%s)", a, dkimUsage)
		}
		if seen {
			return 0, nil, usageErr("--sign-after given twice")
		}
		seen = true
		if !hasVal {
			if i+1 == len(args) {
				return 0, nil, usageErr("--sign-after needs a duration, e.g. --sign-after 48h")
			}
			i++
			val = args[i]
		}
		var err error
		if d, err = dkimkeys.ParseSignAfter(val); err != nil {
			return 0, nil, usageErr("%v", err)
		}
	}
	return d, rest, nil
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
		return fmt.Errorf("%s already has DKIM keys %s: use `postrider dkim rotate %s` for new ones", domain, selectors(active), domain)
	}
	// Nothing signed before, so nothing is lost by signing at once: until
	// the records resolve, receivers see a signature they cannot check,
	// which DMARC counts as none (RFC 7489 §4.2), as it did the absent one.
	pair, err := addPair(ctx, st, domain, now, now, keys)
	if err != nil {
		return err
	}
	note(stdout, "DKIM keys for %s created: %s.\nMail from %s is signed with both from now on (RFC 8463 §3).", domain, describe(pair), domain)
	note(stdout, "Publish these records in the zone of %s (until they are, receivers treat the mail as\nunsigned); `postrider dns %s` prints them with every other record the domain needs:", domain, domain)
	return printRecords(pair, stdout)
}

// dkimRotate adds a new key pair that signs from now+signAfter; until then
// the current keys sign, so that the new records can be published and
// reach the receivers' resolvers before any mail depends on them. At that
// moment the old keys are superseded (nothing is written then: the signer
// and this command derive it from the times, mailauth.DKIMKeyStates); they
// stay listed and published for dkimkeys.KeepRetired, for the mail signed
// with them. A pending rotation (keys that do not sign yet) is replaced:
// its keys are retired, never having signed.
func dkimRotate(ctx context.Context, st dkimStore, domain string, now time.Time, signAfter time.Duration, stdout io.Writer) error {
	keys, err := st.ListDKIMKeys(ctx, domain)
	if err != nil {
		return err
	}
	var signing, pending, keep []mailstore.DKIMKey
	for _, s := range dkimkeys.States(keys, now) {
		switch s.Status {
		case mailauth.DKIMSigning:
			signing = append(signing, s.Key)
		case mailauth.DKIMPending:
			pending = append(pending, s.Key)
			continue
		}
		keep = append(keep, s.Key)
	}
	if len(signing) == 0 && len(pending) == 0 {
		return fmt.Errorf("%s has no DKIM key to rotate: create its first keys with `postrider dkim generate %s`", domain, domain)
	}
	from := now.Add(signAfter)
	pair, err := addPair(ctx, st, domain, now, from, keys)
	if err != nil {
		return err
	}
	if len(pending) > 0 {
		// Retire the pending keys: every key but those listed and kept,
		// and the new pair. A key another command added meanwhile would
		// be retired too; it would not have signed yet either.
		sels := []string{pair[0].Selector, pair[1].Selector}
		for _, k := range keep {
			sels = append(sels, k.Selector)
		}
		if err := st.RetireDKIMKeys(ctx, domain, sels, now); err != nil {
			return fmt.Errorf("dkim rotate %s: new keys %s stored, but the pending keys %s could not be retired: %w", domain, describe(pair), selectors(pending), err)
		}
	}

	note(stdout, "New DKIM keys for %s: %s.", domain, describe(pair))
	if signAfter == 0 {
		note(stdout, "They sign its mail from now on (%s; on every node within a minute), so their records\nmust resolve already (--sign-after 0); if they do not yet, publish them at once:", dkimkeys.Time(from))
	} else {
		note(stdout, "Publish these records now. The new keys sign from %s (in %s), on every node;\nuntil then the current keys sign, so receivers can check every message meanwhile:", dkimkeys.Time(from), spell(signAfter))
	}
	if err := printRecords(pair, stdout); err != nil {
		return err
	}
	if signAfter > 0 {
		note(stdout, "Check before %s that each resolves (e.g. `dig +short TXT %s`).\nIf they cannot be published by then, run `postrider dkim rotate --sign-after DURATION %s`\nagain: it replaces these keys with new ones, and the current keys sign until the new time.", dkimkeys.Time(from), fqdnOf(dkimkeys.RecordName(pair[0].Selector, domain)), domain)
	}
	if len(pending) > 0 {
		note(stdout, "This replaces the rotation that was pending: %s never signed and are retired.\nIf their records were published, delete them; then run:", selectors(pending))
		for _, k := range pending {
			note(stdout, "  postrider dkim remove %s %s", domain, k.Selector)
		}
	}
	if len(signing) > 0 {
		when := "stop signing at " + dkimkeys.Time(from)
		if signAfter == 0 {
			when = "are superseded now"
		}
		note(stdout, "The current keys %s %s. Keep their DNS records until %s\n(mail signed with them may still be queued or in transit and is checked against them);\nthen delete the records and run:", selectors(signing), when, dkimkeys.Time(from.Add(dkimkeys.KeepRetired)))
		for _, k := range signing {
			note(stdout, "  postrider dkim remove %s %s", domain, k.Selector)
		}
	}
	return nil
}

func dkimList(ctx context.Context, st dkimStore, domain string, now time.Time, stdout io.Writer) error {
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
	// States are per domain; the list of all is grouped by domain.
	for len(keys) > 0 {
		n := 1
		for n < len(keys) && keys[n].Domain == keys[0].Domain {
			n++
		}
		for _, s := range dkimkeys.States(keys[:n], now) {
			k := s.Key
			note(stdout, "%s\t%s\t%s\tcreated %s\t%s", k.Domain, k.Selector, k.Algorithm, k.CreatedAt.UTC().Format("2006-01-02"), s.Describe())
			rec, err := zonerecords.KeyRecord(k)
			if err != nil {
				return err
			}
			fmt.Fprint(stdout, rec)
		}
		keys = keys[n:]
	}
	return nil
}

// dkimRemove deletes a key that neither signs nor will: superseded or
// retired. Before its remove-after date it is deleted all the same (the
// admin may know the mail is gone), with a warning.
func dkimRemove(ctx context.Context, st dkimStore, domain, selector string, now time.Time, stdout, stderr io.Writer) error {
	keys, err := st.ListDKIMKeys(ctx, domain)
	if err != nil {
		return err
	}
	for _, s := range dkimkeys.States(keys, now) {
		if s.Key.Selector != selector {
			continue
		}
		switch s.Status {
		case mailauth.DKIMSigning:
			return fmt.Errorf("DKIM key %s of %s still signs: replace it with `postrider dkim rotate %s`, and remove it once it is superseded", selector, domain, domain)
		case mailauth.DKIMPending:
			return fmt.Errorf("DKIM key %s of %s signs from %s: it is the next key, not an old one (to replace it, run `postrider dkim rotate %s` again)", selector, domain, dkimkeys.Time(s.Key.SignFrom), domain)
		}
		if err := st.DeleteDKIMKey(ctx, domain, selector); err != nil {
			return fmt.Errorf("dkim remove %s %s: %w", domain, selector, err)
		}
		fmt.Fprintf(stdout, "DKIM key %s of %s removed; delete its DNS record %s too\n", selector, domain, fqdnOf(dkimkeys.RecordName(selector, domain)))
		if now.Before(s.RemoveAfter) {
			fmt.Fprintf(stderr, "warning: %s signed until %s; mail it signed and checked before %s (e.g. still queued, or forwarded) fails DKIM if its record is gone\n", selector, dkimkeys.Time(s.Stopped), dkimkeys.Time(s.RemoveAfter))
		}
		return nil
	}
	return fmt.Errorf("%s has no DKIM key %s (see `postrider dkim list %s`)", domain, selector, domain)
}

// addPair stores a new Ed25519 and RSA key for domain, created at now,
// signing from signFrom. Selectors are picked unused; should a concurrent
// command take one first, new ones are picked again.
func addPair(ctx context.Context, st dkimStore, domain string, now, signFrom time.Time, keys []mailstore.DKIMKey) ([]mailstore.DKIMKey, error) {
	for attempt := 0; ; attempt++ {
		taken := make([]string, len(keys))
		for i, k := range keys {
			taken[i] = k.Selector
		}
		pair, err := dkimkeys.NewPair(domain, now, taken)
		if err != nil {
			return nil, err
		}
		for i := range pair {
			pair[i].SignFrom = signFrom
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

// spell writes a publish delay for people: "3 days", "36 hours", "90m0s".
func spell(d time.Duration) string {
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	switch {
	case d%(24*time.Hour) == 0:
		return plural(int64(d/(24*time.Hour)), "day")
	case d%time.Hour == 0:
		return plural(int64(d/time.Hour), "hour")
	}
	return d.String()
}
