package storetest

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// testReadMessages checks ReadMessages: whole octets as stored (bare LF,
// empty and shared contents included) for the UIDs asked that are in the
// mailbox, Gone for expunged and never-used UIDs, the maxTotal bound as a
// prefix in UID order, large messages either whole or left out (never
// cut), a caller's buffer reused, invalid UID lists refused, and another
// account's mailbox refused with nothing returned.
func testReadMessages(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	alice := fx.account("alice@example.org")
	bob := fx.account("bob@example.org")
	in := fx.mailbox(alice.ID, "INBOX")
	bIn := fx.mailbox(bob.ID, "INBOX")

	bodies := map[uint32][]byte{}
	var uids []uint32
	add := func(body []byte) uint32 {
		u := fx.appendMsg(alice.ID, in.ID, mailstore.Flags{}, time.Time{}, body).UID
		bodies[u] = body
		uids = append(uids, u)
		return u
	}
	add(simpleMessage("one", "first\r\n.dot line\r\n"))
	add([]byte("Subject: bare LF\n\nno CRLF here\n.\nend"))
	empty := add(nil)
	gone := add(simpleMessage("expunged", "soon gone"))
	add(genMessage(64<<10, 1)) // the largest a backend must read whole
	large := add(genMessage(3<<20+17, 2))
	shared := fx.deliver(simpleMessage("shared", "to both"), mailstore.Recipient{AccountID: alice.ID},
		mailstore.Recipient{AccountID: bob.ID}).Delivered
	uids = append(uids, shared[0].UID)
	bodies[shared[0].UID] = fx.mustRead(alice.ID, in.ID, shared[0].UID)
	for range 3 {
		add(genMessage(5000, uint64(len(uids))))
	}
	fx.expunge(alice.ID, in.ID, mailstore.UIDs(gone), false)
	never := uids[len(uids)-1] + 1000
	ask := append(append([]uint32{}, uids...), never)

	check := func(what string, got []mailstore.MessageOctets, maxTotal int64) {
		t.Helper()
		if len(got) != len(ask) {
			t.Fatalf("%s: %d entries for %d UIDs", what, len(got), len(ask))
		}
		var total int64
		cut := false // the bound was reached: nothing small after it is read
		for i, o := range got {
			u := ask[i]
			if o.UID != u {
				t.Errorf("%s: entry %d is UID %d, want %d", what, i, o.UID, u)
			}
			if u == gone || u == never {
				if !o.Gone || o.Whole || len(o.Data) > 0 {
					t.Errorf("%s: UID %d not in the mailbox: %+v", what, u, o.Gone)
				}
				continue
			}
			if o.Gone {
				t.Errorf("%s: UID %d reported gone", what, u)
				continue
			}
			body := bodies[u]
			if !o.Whole {
				if len(o.Data) > 0 {
					t.Errorf("%s: UID %d not whole but has %d octets", what, u, len(o.Data))
				}
				if int64(len(body)) <= 64<<10 && !cut && total+int64(len(body)) <= maxTotal {
					t.Errorf("%s: UID %d (%d octets) left out with %d of %d used", what, u, len(body), total, maxTotal)
				}
				if int64(len(body)) <= 64<<10 {
					cut = true
				}
				continue
			}
			if cut {
				t.Errorf("%s: UID %d read after an earlier message was left out for the bound", what, u)
			}
			if !bytes.Equal(o.Data, body) {
				t.Errorf("%s: UID %d: got %d octets, want %d (first difference at %d)", what, u, len(o.Data), len(body), firstDiff(o.Data, body))
			}
			if o.Data == nil {
				t.Errorf("%s: UID %d whole with nil Data", what, u)
			}
			total += int64(len(o.Data))
		}
		if total > maxTotal {
			t.Errorf("%s: read %d octets, bound %d", what, total, maxTotal)
		}
	}

	got, err := st.ReadMessages(ctx, alice.ID, in.ID, ask, 1<<30, nil)
	must(t, err, "ReadMessages")
	check("everything", got, 1<<30)
	for _, o := range got {
		if o.UID == empty && !o.Whole {
			t.Errorf("the empty message was not read")
		}
	}

	// The bound: exactly the first messages that fit, in UID order, into
	// a caller's buffer; then the same buffer again for another read.
	var firstTwo int64
	for _, u := range uids[:2] {
		firstTwo += int64(len(bodies[u]))
	}
	buf := make([]byte, 0, 1<<20)
	for _, bound := range []int64{0, 1, firstTwo - 1, firstTwo, firstTwo + 1, 80 << 10, 200 << 10} {
		got, err := st.ReadMessages(ctx, alice.ID, in.ID, ask, bound, buf)
		must(t, err, "ReadMessages with a bound")
		check(fmt.Sprintf("bound %d", bound), got, bound)
		// uids[2] is the empty message, uids[4] the 64 KiB one.
		if bound == firstTwo && (!got[0].Whole || !got[1].Whole || !got[2].Whole || got[4].Whole) {
			t.Errorf("bound %d: the first two messages and the empty one only should be read: %v %v %v %v",
				bound, got[0].Whole, got[1].Whole, got[2].Whole, got[4].Whole)
		}
		if bound == 0 && (got[0].Whole || got[2].Whole) {
			t.Errorf("bound 0: the first message does not fit, so nothing after it is read (got %v %v)", got[0].Whole, got[2].Whole)
		}
	}

	// A subset, and the large message alone: whole or left out, never cut.
	got, err = st.ReadMessages(ctx, alice.ID, in.ID, []uint32{large}, 1<<30, buf)
	must(t, err, "ReadMessages large")
	if len(got) != 1 || got[0].Gone || (got[0].Whole && !bytes.Equal(got[0].Data, bodies[large])) {
		t.Errorf("large message: %d entries, gone=%v whole=%v", len(got), got[0].Gone, got[0].Whole)
	}

	// Nothing asked: nothing returned; bad lists refused.
	got, err = st.ReadMessages(ctx, alice.ID, in.ID, []uint32{}, 1<<20, nil)
	if err != nil || len(got) != 0 {
		t.Errorf("no UIDs: %d entries, %v", len(got), err)
	}
	for _, bad := range [][]uint32{{uids[1], uids[0]}, {uids[0], uids[0]}} {
		_, err := st.ReadMessages(ctx, alice.ID, in.ID, bad, 1<<20, nil)
		wantErr(t, err, fmt.Sprintf("ReadMessages %v", bad), mailstore.ErrInvalidArgument)
	}

	// Only gone UIDs: every entry Gone, no error.
	got, err = st.ReadMessages(ctx, alice.ID, in.ID, []uint32{gone, never}, 1<<20, nil)
	if err != nil || len(got) != 2 || !got[0].Gone || !got[1].Gone {
		t.Errorf("gone UIDs: %+v, %v", got, err)
	}

	// Isolation: bob names alice's INBOX (and alice bob's, which holds a
	// message with the same content and a UID alice asks for).
	for _, tc := range []struct {
		who        string
		acct, mbox int64
		uids       []uint32
	}{
		{"bob on alice's INBOX", bob.ID, in.ID, ask},
		{"alice on bob's INBOX", alice.ID, bIn.ID, []uint32{shared[1].UID}},
		{"bob on alice's INBOX, no UIDs", bob.ID, in.ID, nil},
	} {
		got, err := st.ReadMessages(ctx, tc.acct, tc.mbox, tc.uids, 1<<30, nil)
		wantErr(t, err, "ReadMessages by "+tc.who, mailstore.ErrNoSuchMailbox)
		for _, o := range got {
			if o.Whole || len(o.Data) > 0 {
				t.Errorf("ReadMessages by %s leaked UID %d", tc.who, o.UID)
			}
		}
	}
}
