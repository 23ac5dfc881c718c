package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/postrider/postrider/mailstore"
)

// benchMailbox delivers n messages into one account's INBOX.
func benchMailbox(b *testing.B, n int) (st mailstore.Store, acct, mbox int64) {
	b.Helper()
	s, ids := benchStore(b, 1)
	ctx := context.Background()
	for i := 0; i < n; i++ {
		_, err := s.Deliver(ctx, &mailstore.Delivery{MailFrom: "sender@example.net",
			Recipients: []mailstore.Recipient{{AccountID: ids[0]}}, Body: strings.NewReader(msg(fmt.Sprint("m", i), "x"))})
		must(b, err)
	}
	return s, ids[0], inbox(b, s, ids[0]).ID
}

// BenchmarkStoreFlagsChange: each STORE changes one message's \Seen.
func BenchmarkStoreFlagsChange(b *testing.B) {
	st, acct, mbox := benchMailbox(b, 50)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		op := mailstore.FlagsAdd
		if (i/50)%2 == 1 {
			op = mailstore.FlagsRemove
		}
		r, err := st.StoreFlags(ctx, acct, mbox, mailstore.UIDs(uint32(i%50+1)), op, mailstore.Flags{System: mailstore.FlagSeen}, 0)
		must(b, err)
		if len(r.Updated) != 1 {
			b.Fatalf("STORE %d changed %d messages", i, len(r.Updated))
		}
	}
}

// BenchmarkStoreFlagsNoop: +FLAGS \Seen on 50 seen messages.
func BenchmarkStoreFlagsNoop(b *testing.B) {
	st, acct, mbox := benchMailbox(b, 50)
	ctx := context.Background()
	all := mailstore.UIDSet{{Start: 1, Stop: 0}}
	_, err := st.StoreFlags(ctx, acct, mbox, all, mailstore.FlagsAdd, mailstore.Flags{System: mailstore.FlagSeen}, 0)
	must(b, err)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := st.StoreFlags(ctx, acct, mbox, all, mailstore.FlagsAdd, mailstore.Flags{System: mailstore.FlagSeen}, 0)
		must(b, err)
		if len(r.Updated) != 0 {
			b.Fatalf("no-op STORE changed %d messages", len(r.Updated))
		}
	}
}

// BenchmarkExpungeNoop: EXPUNGE (\Deleted only, UIDs 1:*) of a mailbox of
// 50 messages without \Deleted.
func BenchmarkExpungeNoop(b *testing.B) {
	st, acct, mbox := benchMailbox(b, 50)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := st.Expunge(ctx, acct, mbox, mailstore.UIDSet{{Start: 1, Stop: 50}}, true)
		must(b, err)
		if len(r.UIDs) != 0 {
			b.Fatalf("no-op EXPUNGE removed %d messages", len(r.UIDs))
		}
	}
}

// BenchmarkClaimRecentNoop: a \Recent claim with nothing new.
func BenchmarkClaimRecentNoop(b *testing.B) {
	st, acct, mbox := benchMailbox(b, 50)
	ctx := context.Background()
	_, err := st.ClaimRecent(ctx, acct, mbox)
	must(b, err)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		u, err := st.ClaimRecent(ctx, acct, mbox)
		must(b, err)
		if len(u) != 0 {
			b.Fatalf("claimed %v", u)
		}
	}
}
