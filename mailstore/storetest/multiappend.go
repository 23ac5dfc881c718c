package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// appendSeq returns a MultiAppend next function over msgs.
func appendSeq(msgs ...mailstore.AppendMessage) func() (mailstore.AppendMessage, bool, error) {
	i := 0
	return func() (mailstore.AppendMessage, bool, error) {
		if i >= len(msgs) {
			return mailstore.AppendMessage{}, false, nil
		}
		i++
		return msgs[i-1], true, nil
	}
}

// testMultiAppend: several messages (small and larger than any likely
// chunk) stored in one mailbox with consecutive UIDs, flags, dates, exact
// octets, searchable text; a single message behaves as Append.
func testMultiAppend(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	alice := fx.account("alice@example.org")
	inbox := fx.mailbox(alice.ID, "INBOX")
	fx.appendMsg(alice.ID, inbox.ID, mailstore.Flags{}, time.Time{}, simpleMessage("first", "x"))
	before := fx.status(alice.ID, inbox.ID)

	date := time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)
	bodies := [][]byte{
		simpleMessage("one", "the word zanzibar is here"),
		genMessage(700_000, 7),
		simpleMessage("three", "third body"),
	}
	flags := []mailstore.Flags{{System: mailstore.FlagSeen}, {Keywords: []string{"$Forwarded", "$forwarded"}}, {}}
	var msgs []mailstore.AppendMessage
	for i, b := range bodies {
		msgs = append(msgs, mailstore.AppendMessage{Flags: flags[i], Date: date, Body: bytes.NewReader(b)})
	}
	res, err := st.MultiAppend(ctx, alice.ID, inbox.ID, appendSeq(msgs...))
	must(t, err, "MultiAppend of 3")
	if len(res) != 3 {
		t.Fatalf("MultiAppend returned %d results, want 3", len(res))
	}
	for i, r := range res {
		if r.UID != before.UIDNext+uint32(i) || r.UIDValidity != before.UIDValidity {
			t.Errorf("message %d: UID %d/%d, want %d/%d", i, r.UIDValidity, r.UID, before.UIDValidity, before.UIDNext+uint32(i))
		}
		if r.Size != int64(len(bodies[i])) {
			t.Errorf("message %d: size %d, want %d", i, r.Size, len(bodies[i]))
		}
		if got := fx.mustRead(alice.ID, inbox.ID, r.UID); !bytes.Equal(got, bodies[i]) {
			t.Errorf("message %d: read back %d octets differing from the %d appended", i, len(got), len(bodies[i]))
		}
	}
	metas := fx.list(alice.ID, inbox.ID, mailstore.UIDs(res[0].UID, res[1].UID, res[2].UID))
	if len(metas) != 3 {
		t.Fatalf("listed %d of the appended messages, want 3", len(metas))
	}
	for i, m := range metas {
		if !sameFlags(m.Flags, res[i].Flags) || !sameSecond(m.InternalDate, date) {
			t.Errorf("message %d: flags %s date %v, want %s %v", i, flagString(m.Flags), m.InternalDate, flagString(res[i].Flags), date)
		}
		if m.ModSeq != res[i].ModSeq {
			t.Errorf("message %d: modseq %d, result said %d", i, m.ModSeq, res[i].ModSeq)
		}
	}
	if len(res[1].Flags.Keywords) != 1 {
		t.Errorf("keywords not deduplicated: %v", res[1].Flags.Keywords)
	}
	after := fx.status(alice.ID, inbox.ID)
	if after.Messages != before.Messages+3 || after.UIDNext != before.UIDNext+3 {
		t.Errorf("status after: %d messages, uidnext %d; want %d, %d", after.Messages, after.UIDNext, before.Messages+3, before.UIDNext+3)
	}
	got, err := st.Search(ctx, alice.ID, inbox.ID, &mailstore.SearchCriteria{Body: []string{"zanzibar"}})
	must(t, err, "Search")
	if !equalUIDs(got, []uint32{res[0].UID}) {
		t.Errorf("BODY zanzibar found %v, want [%d]", got, res[0].UID)
	}
	fx.checkQuota(alice.ID, fx.sumSizes(alice.ID), "after MultiAppend")

	// One message: as Append.
	one, err := st.MultiAppend(ctx, alice.ID, inbox.ID, appendSeq(mailstore.AppendMessage{Body: bytes.NewReader(simpleMessage("single", "s"))}))
	must(t, err, "MultiAppend of 1")
	if len(one) != 1 || one[0].UID != after.UIDNext {
		t.Errorf("single MultiAppend: %+v, want UID %d", one, after.UIDNext)
	}
	// Another account's mailbox is not found; nothing is stored.
	bob := fx.account("bob@example.org")
	snap := fx.snapshot()
	_, err = st.MultiAppend(ctx, bob.ID, inbox.ID, appendSeq(
		mailstore.AppendMessage{Body: bytes.NewReader(simpleMessage("a", "a"))},
		mailstore.AppendMessage{Body: bytes.NewReader(simpleMessage("b", "b"))}))
	wantErr(t, err, "MultiAppend to another account's mailbox", mailstore.ErrNoSuchMailbox)
	if d := diffSnapshots(snap, fx.snapshot()); d != "" {
		t.Errorf("MultiAppend to another account's mailbox changed the store:%s", d)
	}
}

// testMultiAppendAllOrNothing: a body cut short (on any message, small or
// large), an error from next, the quota exceeded by the total only, too
// many messages, a message over the size limit: an error, and the store
// as before (no message, no UID used, no quota charged).
func testMultiAppendAllOrNothing(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	alice := fx.account("alice@example.org")
	inbox := fx.mailbox(alice.ID, "INBOX")
	fx.appendMsg(alice.ID, inbox.ID, mailstore.Flags{}, time.Time{}, simpleMessage("first", "x"))
	small := func(i int) mailstore.AppendMessage {
		return mailstore.AppendMessage{Body: bytes.NewReader(simpleMessage(fmt.Sprint("m", i), "body"))}
	}
	check := func(name string, err error, targets ...error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: stored, want an error", name)
		} else if len(targets) > 0 {
			wantErr(t, err, name, targets...)
		}
	}
	snap := fx.snapshot()
	same := func(name string) {
		t.Helper()
		if d := diffSnapshots(snap, fx.snapshot()); d != "" {
			t.Errorf("%s changed the store:%s", name, d)
			snap = fx.snapshot()
		}
	}
	for _, size := range []int{1000, 600_000} {
		for pos := 0; pos < 3; pos++ {
			msgs := []mailstore.AppendMessage{small(0), small(1), small(2)}
			body := genMessage(int64(size), uint64(pos+1))
			msgs[pos] = mailstore.AppendMessage{Body: &cutReader{data: body[:size/2], err: io.ErrUnexpectedEOF}}
			name := fmt.Sprintf("message %d of 3 cut after %d of %d octets", pos+1, size/2, size)
			_, err := st.MultiAppend(ctx, alice.ID, inbox.ID, appendSeq(msgs...))
			check(name, err, mailstore.ErrTruncated)
			same(name)
		}
	}
	// next fails after two messages (a client that sent a bad command
	// line after them).
	errBad := errors.New("client sent garbage")
	i := 0
	_, err := st.MultiAppend(ctx, alice.ID, inbox.ID, func() (mailstore.AppendMessage, bool, error) {
		i++
		if i > 2 {
			return mailstore.AppendMessage{}, false, errBad
		}
		return small(i), true, nil
	})
	check("next failing after 2 messages", err, errBad)
	same("next failing")

	// Too many messages.
	n := 0
	_, err = st.MultiAppend(ctx, alice.ID, inbox.ID, func() (mailstore.AppendMessage, bool, error) {
		n++
		return small(n), true, nil
	})
	check("endless MultiAppend", err, mailstore.ErrInvalidArgument)
	if n > mailstore.MaxMultiAppend+1 {
		t.Errorf("MultiAppend asked for %d messages, bound %d", n, mailstore.MaxMultiAppend)
	}
	same("endless MultiAppend")

	// Quota: each message fits, the three together do not.
	used, _ := fx.usage(alice.ID)
	msg := genMessage(100_000, 3)
	must(t, st.SetQuota(ctx, alice.ID, used+250_000), "SetQuota")
	snap = fx.snapshot()
	_, err = st.MultiAppend(ctx, alice.ID, inbox.ID, appendSeq(
		mailstore.AppendMessage{Body: bytes.NewReader(msg)},
		mailstore.AppendMessage{Body: bytes.NewReader(msg)},
		mailstore.AppendMessage{Body: bytes.NewReader(msg)}))
	check("three messages over quota together", err, mailstore.ErrOverQuota)
	same("over quota")
	res, err := st.MultiAppend(ctx, alice.ID, inbox.ID, appendSeq(
		mailstore.AppendMessage{Body: bytes.NewReader(msg)},
		mailstore.AppendMessage{Body: bytes.NewReader(msg)}))
	must(t, err, "two messages within quota")
	if len(res) != 2 {
		t.Errorf("two within quota: %d results", len(res))
	}
	fx.checkQuota(alice.ID, used+200_000, "after two within quota")
}

// testBigMultiAppend appends four 10 MB messages and 20 small ones in one
// MultiAppend and checks that the Go heap grows by less than heapBudget:
// each body is streamed as it is read, none is held whole, and the
// messages are not all kept in memory until the commit. (Run from
// testBigMessage, alone, as HeapAlloc is process-wide.)
func testBigMultiAppend(t *testing.T, fx *fixture, acct, mbox int64) {
	const big, nBig, nSmall = 10_000_000, 4, 20
	base := heapNow()
	sampler := startHeapSampler()
	start := time.Now()
	i := 0
	res, err := fx.st.MultiAppend(fx.ctx, acct, mbox, func() (mailstore.AppendMessage, bool, error) {
		if i >= nBig+nSmall {
			return mailstore.AppendMessage{}, false, nil
		}
		i++
		if i%6 == 1 {
			return mailstore.AppendMessage{Body: newGenReader(big, uint64(100+i))}, true, nil
		}
		return mailstore.AppendMessage{Body: bytes.NewReader(simpleMessage(fmt.Sprint("s", i), "small"))}, true, nil
	})
	peak := sampler.Stop()
	growth := int64(peak) - int64(base)
	must(t, err, "MultiAppend of 4 x 10 MB and 20 small messages")
	t.Logf("MultiAppend of %d x %d MB and %d small messages: %v, heap growth %.2f MiB (budget %d MiB, GOGC=10)",
		nBig, big/1_000_000, nSmall, time.Since(start).Round(time.Millisecond), float64(growth)/(1<<20), heapBudget>>20)
	if len(res) != nBig+nSmall {
		t.Fatalf("MultiAppend returned %d results, want %d", len(res), nBig+nSmall)
	}
	if growth >= heapBudget {
		t.Errorf("MultiAppend of %d MB grew the Go heap by %.1f MiB, budget %d MiB", nBig*big/1_000_000, float64(growth)/(1<<20), heapBudget>>20)
	}
	for k, r := range res {
		if k%6 == 0 && r.Size != big {
			t.Errorf("message %d: size %d, want %d", k, r.Size, big)
		}
	}
}
