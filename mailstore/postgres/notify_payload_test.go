package postgres

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestNotifyPayloadRoundTrip(t *testing.T) {
	var cs []change
	for i := int64(0); i < 3000; i++ {
		id := i*7919 + 1<<40
		if i%3 == 0 {
			cs = append(cs, change{account: id}) // account-level
		} else {
			cs = append(cs, change{account: id, mailbox: id + 5, modseq: i * 1000003})
		}
	}
	cs = append(cs, change{account: 1<<63 - 1, mailbox: 1<<63 - 1, modseq: 1<<63 - 1})
	ps := notifyPayloads(cs)
	if len(ps) < 2 {
		t.Fatalf("%d payloads for %d changes", len(ps), len(cs))
	}
	var got []change
	for _, p := range ps {
		if len(p) > maxNotifyPayload {
			t.Fatalf("payload of %d bytes", len(p))
		}
		if !parseNotifyPayload(p, func(c change) { got = append(got, c) }, func() { t.Fatalf("%q parsed as everything", p) }) {
			t.Fatalf("payload %q rejected", p)
		}
	}
	if !slices.Equal(got, cs) {
		t.Fatalf("round trip lost changes: %d of %d", len(got), len(cs))
	}
	if notifyPayloads(nil) != nil {
		t.Fatal("payloads for no changes")
	}
}

func TestNotifyPayloadParse(t *testing.T) {
	parse := func(p string) ([]change, int, bool) {
		var cs []change
		all := 0
		ok := parseNotifyPayload(p, func(c change) { cs = append(cs, c) }, func() { all++ })
		return cs, all, ok
	}
	// An old node's payload: account IDs only.
	if cs, all, ok := parse("42,7"); !ok || all != 0 || !slices.Equal(cs, []change{{account: 42}, {account: 7}}) {
		t.Fatalf("old payload: %v %d %v", cs, all, ok)
	}
	if cs, all, ok := parse("42:3:99,*,5"); !ok || all != 1 || !slices.Equal(cs, []change{{account: 42, mailbox: 3, modseq: 99}, {account: 5}}) {
		t.Fatalf("mixed payload: %v %d %v", cs, all, ok)
	}
	for _, bad := range []string{"", "1,", ",1", "1,x", "+1", "-1", "0", "1:0:5", "1:2", "1:2:3:4", "1::3", "1:2:",
		"9223372036854775808", "1:2:99999999999999999999", " 1", "1 ", "**", "1:*:2", strings.Repeat("1,", 4001) + "1"} {
		if _, _, ok := parse(bad); ok {
			t.Errorf("malformed payload %q accepted", bad)
		}
	}
}

// FuzzNotifyPayload: the listener parses whatever arrives on the channel
// (another node's, or anyone's with access to the database). Whatever it
// accepts renders back to an equivalent payload.
func FuzzNotifyPayload(f *testing.F) {
	for _, s := range []string{"1", "42,7", "42:3:99", "1:2:3,*,4", "*", "9223372036854775807:1:0", "1,x", "1:0:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		var cs []change
		all := false
		if !parseNotifyPayload(p, func(c change) { cs = append(cs, c) }, func() { all = true }) {
			return
		}
		for _, c := range cs {
			if c.account <= 0 || c.mailbox < 0 || c.modseq < 0 {
				t.Fatalf("%q gave %+v", p, c)
			}
		}
		if all {
			return
		}
		var again []change
		for _, q := range notifyPayloads(cs) {
			if !parseNotifyPayload(q, func(c change) { again = append(again, c) }, func() { t.Fatal("*") }) {
				t.Fatalf("rendering of %q (%q) rejected", p, q)
			}
		}
		if !slices.Equal(cs, again) {
			t.Fatalf("%q: %v, rendered and parsed again %v", p, cs, again)
		}
	})
}

// TestNotifierCoalesces: the queue keeps each mailbox's highest modseq,
// an account-level entry covers the account's mailboxes, and an overflow
// becomes one "everything may have changed".
func TestNotifierCoalesces(t *testing.T) {
	s := &Store{hub: newHub(), notifier: newNotifier()}
	s.notifyChanges([]change{{account: 1, mailbox: 2, modseq: 5}, {account: 1, mailbox: 2, modseq: 4}, {account: 3, mailbox: 4, modseq: 1}})
	s.notifyChanges([]change{{account: 3}, {account: 1, mailbox: 2, modseq: 6}})
	cs, all, _ := s.notifier.take()
	slices.SortFunc(cs, func(a, b change) int { return int(a.account - b.account) })
	if all || !slices.Equal(cs, []change{{account: 1, mailbox: 2, modseq: 6}, {account: 3}}) {
		t.Fatalf("coalesced %v (all %v)", cs, all)
	}
	if cs, all, _ := s.notifier.take(); cs != nil || all {
		t.Fatalf("queue not emptied: %v", cs)
	}
	for i := int64(1); i <= maxPendingNotifies+1; i++ {
		s.notifyChanges(accountChange(i))
	}
	if cs, all, _ := s.notifier.take(); !all || cs != nil || !slices.Equal(payloadsOf(cs, all), []string{allChanged}) {
		t.Fatalf("overflow gave %d changes, all %v", len(cs), all)
	}
	s.notifier.requeue([]change{{account: 7, mailbox: 8, modseq: 9}}, false, time.Now())
	if cs, _, _ := s.notifier.take(); !slices.Equal(cs, []change{{account: 7, mailbox: 8, modseq: 9}}) {
		t.Fatalf("requeued %v", cs)
	}
}

// TestNotifyUncertain: a write that failed in the database committed
// nothing; one whose connection broke may have: its accounts count as
// changed.
func TestNotifyUncertain(t *testing.T) {
	s := &Store{hub: newHub(), notifier: newNotifier()}
	s.notifyUncertain(nil, 1)
	s.notifyUncertain(fmt.Errorf("store flags: %w", &pgconn.PgError{Code: "40P01"}), 2)
	if cs, all, _ := s.notifier.take(); cs != nil || all {
		t.Fatalf("definite outcomes notified %v", cs)
	}
	s.notifyUncertain(fmt.Errorf("deliver: %w", io.ErrUnexpectedEOF), 3, 4)
	cs, _, _ := s.notifier.take()
	slices.SortFunc(cs, func(a, b change) int { return int(a.account - b.account) })
	if !slices.Equal(cs, []change{{account: 3}, {account: 4}}) {
		t.Fatalf("uncertain outcome notified %v", cs)
	}
}

// FuzzNotifyStamp: stamps arrive from the network like payloads; whatever
// parses renders back the same.
func FuzzNotifyStamp(f *testing.F) {
	for _, s := range []string{"1765152000000000", "0", "", "-1", "12a", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		ts, ok := parseNotifyStamp(p)
		if !ok {
			return
		}
		if got := notifyStamp(ts); strings.TrimLeft(p, "0") != strings.TrimLeft(got, "0") {
			t.Fatalf("%q parsed as %v, renders as %q", p, ts, got)
		}
	})
}
