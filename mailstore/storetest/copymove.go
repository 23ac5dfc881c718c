package storetest

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// copySetup fills alice's INBOX with four messages of distinct flags, sizes
// and dates, expunges the second, and puts one message in Archive so that
// the destination's UIDs do not start at 1.
func copySetup(fx *fixture) (a mailstore.Account, src, dst mailstore.Mailbox, u []uint32, bodies map[uint32][]byte) {
	a = fx.account("alice@example.org")
	src = fx.mailbox(a.ID, "INBOX")
	dst = fx.mailbox(a.ID, "Archive")
	fx.appendMsg(a.ID, dst.ID, mailstore.Flags{}, fixedDate, simpleMessage("already here", "x"))
	bodies = map[uint32][]byte{}
	for i := 0; i < 4; i++ {
		body := simpleMessage(fmt.Sprintf("copy me %d", i), strings.Repeat("c", 100*i))
		fl := mailstore.Flags{System: mailstore.SystemFlag(1 << i), Keywords: []string{fmt.Sprintf("$K%d", i)}}
		r := fx.appendMsg(a.ID, src.ID, fl, fixedDate.Add(time.Duration(i)*time.Hour), body)
		u = append(u, r.UID)
		bodies[r.UID] = body
	}
	fx.expunge(a.ID, src.ID, mailstore.UIDs(u[1]), false)
	return a, src, dst, u, bodies
}

// checkCopied verifies that each destination message equals its source:
// content, size, flags and internal date (RFC 9051 §6.4.7).
func checkCopied(fx *fixture, acct int64, srcMeta map[uint32]mailstore.MessageMeta, bodies map[uint32][]byte, dstID int64, r mailstore.CopyResult) {
	fx.t.Helper()
	dstMeta := messageByUID(fx.list(acct, dstID, nil))
	for i := range r.SrcUIDs {
		if i >= len(r.DstUIDs) {
			break
		}
		s, d := srcMeta[r.SrcUIDs[i]], dstMeta[r.DstUIDs[i]]
		if d.UID == 0 {
			fx.t.Errorf("destination UID %d (from %d) not listed", r.DstUIDs[i], r.SrcUIDs[i])
			continue
		}
		if d.Size != s.Size || !sameFlags(d.Flags, s.Flags) || !sameSecond(d.InternalDate, s.InternalDate) {
			fx.t.Errorf("copy %d -> %d: destination %+v differs from source %+v", s.UID, d.UID, d, s)
		}
		if got := fx.mustRead(acct, dstID, d.UID); !bytes.Equal(got, bodies[s.UID]) {
			fx.t.Errorf("copy %d -> %d: content differs", s.UID, d.UID)
		}
	}
}

func testCopy(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	a, src, dst, u, bodies := copySetup(fx)
	srcBefore := fx.list(a.ID, src.ID, nil)
	dstBefore := fx.status(a.ID, dst.ID)

	r, err := st.Copy(ctx, a.ID, src.ID, mailstore.UIDSet{{Start: u[0], Stop: u[3]}}, dst.ID)
	must(t, err, "Copy")
	if want := []uint32{u[0], u[2], u[3]}; !slices.Equal(r.SrcUIDs, want) {
		t.Errorf("CopyResult.SrcUIDs = %v, want %v (the existing UIDs, ascending)", r.SrcUIDs, want)
	}
	if len(r.DstUIDs) != len(r.SrcUIDs) || !strictlyAscending(r.DstUIDs) || len(r.DstUIDs) == 0 || r.DstUIDs[0] < dstBefore.UIDNext {
		t.Errorf("CopyResult.DstUIDs = %v; want %d ascending UIDs from %d", r.DstUIDs, len(r.SrcUIDs), dstBefore.UIDNext)
	}
	if r.UIDValidity != dstBefore.UIDValidity {
		t.Errorf("CopyResult.UIDValidity = %d, want the destination's %d", r.UIDValidity, dstBefore.UIDValidity)
	}
	checkCopied(fx, a.ID, messageByUID(srcBefore), bodies, dst.ID, r)
	dstAfter := fx.status(a.ID, dst.ID)
	if dstAfter.Messages != dstBefore.Messages+3 || len(r.DstUIDs) > 0 && dstAfter.UIDNext <= r.DstUIDs[len(r.DstUIDs)-1] {
		t.Errorf("destination status after Copy = %+v (before %+v)", dstAfter, dstBefore)
	}
	c := fx.changes(a.ID, dst.ID, dstBefore.HighestModSeq)
	if got := uidsOf(c.Updated); !slices.Equal(got, r.DstUIDs) {
		t.Errorf("destination Changes since the copy = %v, want the new UIDs %v", got, r.DstUIDs)
	}
	for _, m := range c.Updated {
		if m.ModSeq <= dstBefore.HighestModSeq {
			t.Errorf("copied message %d has modseq %d <= destination's previous highest %d", m.UID, m.ModSeq, dstBefore.HighestModSeq)
		}
	}
	// The source is untouched, mod-sequences included.
	if after := fx.list(a.ID, src.ID, nil); !sameMetas(after, srcBefore) {
		t.Errorf("Copy changed the source:\nbefore %+v\nafter  %+v", srcBefore, after)
	}
	fx.checkQuota(a.ID, -1, "after Copy")

	// Copying only missing UIDs copies nothing and allocates nothing.
	r2, err := st.Copy(ctx, a.ID, src.ID, mailstore.UIDs(u[1]), dst.ID)
	must(t, err, "Copy of an expunged UID")
	if len(r2.SrcUIDs) != 0 || len(r2.DstUIDs) != 0 {
		t.Errorf("Copy of an expunged UID = %+v, want nothing", r2)
	}
	if s := fx.status(a.ID, dst.ID); s.UIDNext != dstAfter.UIDNext || s.Messages != dstAfter.Messages {
		t.Errorf("empty Copy changed the destination: %+v -> %+v", dstAfter, s)
	}

	// Copying into the source mailbox itself appends new messages there.
	before := fx.status(a.ID, src.ID)
	rs, err := st.Copy(ctx, a.ID, src.ID, mailstore.UIDs(u[0]), src.ID)
	must(t, err, "Copy into the same mailbox")
	if len(rs.DstUIDs) != 1 || rs.DstUIDs[0] < before.UIDNext || rs.UIDValidity != before.UIDValidity {
		t.Errorf("Copy into the same mailbox = %+v; want one new UID >= %d", rs, before.UIDNext)
	} else if got := fx.mustRead(a.ID, src.ID, rs.DstUIDs[0]); !bytes.Equal(got, bodies[u[0]]) {
		t.Errorf("copy into the same mailbox: content differs")
	}
	if s := fx.status(a.ID, src.ID); s.Messages != before.Messages+1 {
		t.Errorf("after Copy into itself the mailbox has %d messages, want %d", s.Messages, before.Messages+1)
	}
	fx.checkQuota(a.ID, -1, "after Copy into the same mailbox")

	// A copy of a copy, into a third mailbox.
	third := fx.createMailbox(a.ID, "Third", "")
	r3, err := st.Copy(ctx, a.ID, dst.ID, mailstore.UIDs(r.DstUIDs...), third.ID)
	must(t, err, "Copy of copies")
	if len(r3.DstUIDs) != 3 || r3.UIDValidity != third.UIDValidity {
		t.Errorf("Copy of copies = %+v", r3)
	}
	for i := range r3.DstUIDs {
		if got := fx.mustRead(a.ID, third.ID, r3.DstUIDs[i]); i < len(r.SrcUIDs) && !bytes.Equal(got, bodies[r.SrcUIDs[i]]) {
			t.Errorf("copy of copy %d differs", r3.DstUIDs[i])
		}
	}
	fx.checkQuota(a.ID, -1, "after second Copy")
}

func testMove(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	a, src, dst, u, bodies := copySetup(fx)
	srcMeta := messageByUID(fx.list(a.ID, src.ID, nil))
	srcBefore := fx.status(a.ID, src.ID)
	dstBefore := fx.status(a.ID, dst.ID)
	used, _ := fx.usage(a.ID)

	r, err := st.Move(ctx, a.ID, src.ID, mailstore.UIDs(u[0], u[1], u[3]), dst.ID)
	must(t, err, "Move")
	if want := []uint32{u[0], u[3]}; !slices.Equal(r.SrcUIDs, want) {
		t.Errorf("Move SrcUIDs = %v, want %v", r.SrcUIDs, want)
	}
	if len(r.DstUIDs) != 2 || !strictlyAscending(r.DstUIDs) || r.DstUIDs[0] < dstBefore.UIDNext || r.UIDValidity != dstBefore.UIDValidity {
		t.Errorf("Move result = %+v; want 2 ascending UIDs from %d, UIDVALIDITY %d", r, dstBefore.UIDNext, dstBefore.UIDValidity)
	}
	checkCopied(fx, a.ID, srcMeta, bodies, dst.ID, r)
	if got := uidsOf(fx.list(a.ID, src.ID, nil)); !slices.Equal(got, []uint32{u[2]}) {
		t.Errorf("source after Move lists %v, want [%d]", got, u[2])
	}
	// The source keeps tombstones (RFC 7162 §3.2.10 VANISHED).
	c := fx.changes(a.ID, src.ID, srcBefore.HighestModSeq)
	if !slices.Equal(sortedUIDs(c.Vanished), []uint32{u[0], u[3]}) || len(c.Updated) != 0 {
		t.Errorf("source Changes after Move = updated %v vanished %v; want vanished [%d %d]", uidsOf(c.Updated), c.Vanished, u[0], u[3])
	}
	if c.HighestModSeq <= srcBefore.HighestModSeq {
		t.Errorf("source highestmodseq %d did not grow past %d", c.HighestModSeq, srcBefore.HighestModSeq)
	}
	for _, uid := range r.SrcUIDs {
		_, err := st.OpenMessage(ctx, a.ID, src.ID, uid, 0, -1)
		wantErr(t, err, "OpenMessage of a moved UID in the source", mailstore.ErrNoSuchMessage)
	}
	if s := fx.status(a.ID, dst.ID); s.Messages != dstBefore.Messages+2 || s.HighestModSeq <= dstBefore.HighestModSeq {
		t.Errorf("destination status after Move = %+v (before %+v)", s, dstBefore)
	}
	fx.checkQuota(a.ID, used, "after Move (usage unchanged)")

	// Moving again finds nothing to move.
	r2, err := st.Move(ctx, a.ID, src.ID, mailstore.UIDs(u[0]), dst.ID)
	must(t, err, "Move of a moved UID")
	if len(r2.SrcUIDs) != 0 || len(r2.DstUIDs) != 0 {
		t.Errorf("second Move = %+v, want nothing", r2)
	}
}
