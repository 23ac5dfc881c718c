package storetest

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"

	"github.com/postrider/postrider/mailstore"
)

// snapshot renders everything the store exposes (domains, accounts,
// aliases, quotas, subscriptions, mailboxes with their counters, messages
// with flags, mod-sequences and content hashes, the outbound queue) as
// text lines, so that a test can show that a rejected call changed
// nothing.
func (fx *fixture) snapshot() []string {
	fx.t.Helper()
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }

	doms, err := fx.st.ListDomains(fx.ctx)
	must(fx.t, err, "snapshot: ListDomains")
	slices.Sort(doms)
	add("domains %v", doms)

	als, err := fx.st.ListAliases(fx.ctx, "")
	must(fx.t, err, "snapshot: ListAliases")
	var alLines []string
	for _, a := range als {
		alLines = append(alLines, a.Alias+" -> "+a.Target)
	}
	slices.Sort(alLines)
	for _, l := range alLines {
		add("alias %s", l)
	}

	accts, err := fx.st.ListAccounts(fx.ctx, "")
	must(fx.t, err, "snapshot: ListAccounts")
	slices.SortFunc(accts, func(a, b mailstore.Account) int { return strings.Compare(a.Address, b.Address) })
	for _, a := range accts {
		add("account %d %s hash=%q limit=%d created=%d", a.ID, a.Address, a.PasswordHash, a.QuotaLimit, a.CreatedAt.Unix())
		used, limit := fx.usage(a.ID)
		add("  quota used=%d limit=%d", used, limit)
		addrs, err := fx.st.AccountAddresses(fx.ctx, a.ID)
		must(fx.t, err, "snapshot: AccountAddresses")
		slices.Sort(addrs)
		add("  addresses %v", addrs)
		subs, err := fx.st.ListSubscriptions(fx.ctx, a.ID)
		must(fx.t, err, "snapshot: ListSubscriptions")
		slices.Sort(subs)
		add("  subscriptions %q", subs)
		mbs, err := fx.st.ListMailboxes(fx.ctx, a.ID)
		must(fx.t, err, "snapshot: ListMailboxes")
		slices.SortFunc(mbs, func(a, b mailstore.Mailbox) int { return strings.Compare(a.Name, b.Name) })
		for _, mb := range mbs {
			s := fx.status(a.ID, mb.ID)
			add("  mailbox %d %q use=%q uidvalidity=%d uidnext=%d highestmodseq=%d subscribed=%v messages=%d unseen=%d deleted=%d size=%d recent=%d",
				mb.ID, mb.Name, mb.SpecialUse, s.UIDValidity, s.UIDNext, s.HighestModSeq, mb.Subscribed, s.Messages, s.Unseen, s.Deleted, s.Size, s.Recent)
			for _, m := range fx.list(a.ID, mb.ID, nil) {
				sum := sha256.Sum256(fx.mustRead(a.ID, mb.ID, m.UID))
				add("    uid %d modseq=%d flags=%s date=%d size=%d sha256=%x",
					m.UID, m.ModSeq, flagString(m.Flags), m.InternalDate.Unix(), m.Size, sum[:8])
			}
		}
	}
	items, err := fx.st.ListQueue(fx.ctx, 0)
	must(fx.t, err, "snapshot: ListQueue")
	for _, it := range items {
		add("queue %d from=%q sender=%d size=%d next=%d lease=%q", it.ID, it.MailFrom, it.SenderAccount, it.Size, it.NextAttempt.Unix(), it.LeaseHolder)
		for _, r := range it.Recipients {
			add("  rcpt %d %s %s attempts=%d code=%q", r.ID, r.Address, r.State, r.Attempts, r.LastCode)
		}
	}
	return out
}

// diffSnapshots reports the first lines that differ, or "" when equal.
func diffSnapshots(before, after []string) string {
	if slices.Equal(before, after) {
		return ""
	}
	var b strings.Builder
	n := 0
	for i := 0; i < max(len(before), len(after)) && n < 8; i++ {
		var x, y string
		if i < len(before) {
			x = before[i]
		}
		if i < len(after) {
			y = after[i]
		}
		if x != y {
			fmt.Fprintf(&b, "\n  before: %s\n  after:  %s", x, y)
			n++
		}
	}
	return b.String()
}
