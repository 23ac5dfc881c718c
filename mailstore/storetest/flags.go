package storetest

import (
	"slices"
	"testing"

	"github.com/postrider/postrider/mailstore"
)

func fl(sys mailstore.SystemFlag, kw ...string) mailstore.Flags {
	return mailstore.Flags{System: sys, Keywords: kw}
}

func testStoreFlags(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	a := fx.account("alice@example.org")
	inbox := fx.mailbox(a.ID, "INBOX")
	u := fx.appendN(a.ID, inbox.ID, 4)
	meta := func() map[uint32]mailstore.MessageMeta { return messageByUID(fx.list(a.ID, inbox.ID, nil)) }
	highest := fx.status(a.ID, inbox.ID).HighestModSeq

	type step struct {
		name         string
		uids         mailstore.UIDSet
		op           mailstore.FlagOp
		flags        mailstore.Flags
		since        func() uint64 // UNCHANGEDSINCE; nil = 0
		wantUpdated  []uint32
		wantModified []uint32
		wantFlags    map[uint32]mailstore.Flags
	}
	const (
		seen, flagged, answered = mailstore.FlagSeen, mailstore.FlagFlagged, mailstore.FlagAnswered
		draft, deleted          = mailstore.FlagDraft, mailstore.FlagDeleted
		add, remove, replace    = mailstore.FlagsAdd, mailstore.FlagsRemove, mailstore.FlagsReplace
	)
	steps := []step{
		{"add \\Seen $Forwarded", mailstore.UIDs(u[0], u[1]), add, fl(seen, "$Forwarded"), nil, u[:2], nil,
			map[uint32]mailstore.Flags{u[0]: fl(seen, "$Forwarded"), u[1]: fl(seen, "$Forwarded"), u[2]: {}, u[3]: {}}},
		{"add again: no change", mailstore.UIDs(u[0], u[1]), add, fl(seen, "$Forwarded"), nil, nil, nil, nil},
		{"add keyword in other case: no change", mailstore.UIDs(u[0]), add, fl(0, "$FORWARDED"), nil, nil, nil,
			map[uint32]mailstore.Flags{u[0]: fl(seen, "$Forwarded")}},
		{"add \\Flagged and a keyword twice", mailstore.UIDs(u[0]), add, fl(flagged, "Custom", "custom"), nil, u[:1], nil,
			map[uint32]mailstore.Flags{u[0]: fl(seen|flagged, "$Forwarded", "Custom")}},
		{"remove \\Seen from three, two have it", mailstore.UIDSet{{Start: u[0], Stop: u[2]}}, remove, fl(seen), nil, u[:2], nil,
			map[uint32]mailstore.Flags{u[0]: fl(flagged, "$Forwarded", "Custom"), u[1]: fl(0, "$Forwarded"), u[2]: {}}},
		{"remove keyword case-insensitively", mailstore.UIDs(u[1]), remove, fl(0, "$forwarded"), nil, u[1:2], nil,
			map[uint32]mailstore.Flags{u[1]: {}}},
		{"replace", mailstore.UIDs(u[0]), replace, fl(draft, "x"), nil, u[:1], nil,
			map[uint32]mailstore.Flags{u[0]: fl(draft, "x")}},
		{"replace empty by empty: no change", mailstore.UIDs(u[3]), replace, fl(0), nil, nil, nil, nil},
		{"replace by same set in other case: no change", mailstore.UIDs(u[0]), replace, fl(draft, "X"), nil, nil, nil,
			map[uint32]mailstore.Flags{u[0]: fl(draft, "x")}},
		{"UNCHANGEDSINCE below one message's modseq", mailstore.UIDs(u[0], u[2]), add, fl(answered),
			func() uint64 { return meta()[u[2]].ModSeq }, u[2:3], u[:1],
			map[uint32]mailstore.Flags{u[0]: fl(draft, "x"), u[2]: fl(answered)}},
		{"UNCHANGEDSINCE equal to the modseq", mailstore.UIDs(u[0]), add, fl(answered),
			func() uint64 { return meta()[u[0]].ModSeq }, u[:1], nil,
			map[uint32]mailstore.Flags{u[0]: fl(draft|answered, "x")}},
		{"UNCHANGEDSINCE with nothing to change", mailstore.UIDs(u[0]), add, fl(answered),
			func() uint64 { return meta()[u[0]].ModSeq }, nil, nil, nil},
		{"UIDs that do not exist", mailstore.UIDs(u[3] + 100), add, fl(seen), nil, nil, nil, nil},
		{"empty set", mailstore.UIDSet{}, add, fl(seen), nil, nil, nil, nil},
		{"add \\Deleted", mailstore.UIDs(u[3]), add, fl(deleted), nil, u[3:], nil,
			map[uint32]mailstore.Flags{u[3]: fl(deleted)}},
	}
	for _, s := range steps {
		before := meta()
		var since uint64
		if s.since != nil {
			since = s.since()
		}
		r := fx.storeFlags(a.ID, inbox.ID, s.uids, s.op, s.flags, since)
		gotU := sortedUIDs(uidsOf(r.Updated))
		if !equalUIDs(gotU, s.wantUpdated) {
			t.Errorf("%s: Updated = %v, want %v", s.name, gotU, s.wantUpdated)
		}
		if got := sortedUIDs(r.Modified); !equalUIDs(got, s.wantModified) {
			t.Errorf("%s: Modified = %v, want %v", s.name, got, s.wantModified)
		}
		after := meta()
		var maxMod uint64
		for _, m := range r.Updated {
			if m.ModSeq <= highest {
				t.Errorf("%s: UID %d got modseq %d, not above the highest seen before (%d)", s.name, m.UID, m.ModSeq, highest)
			}
			if x := after[m.UID]; x.ModSeq != m.ModSeq || !sameFlags(x.Flags, m.Flags) {
				t.Errorf("%s: Updated reports %d modseq %d flags %s; listing has modseq %d flags %s",
					s.name, m.UID, m.ModSeq, flagString(m.Flags), x.ModSeq, flagString(x.Flags))
			}
			maxMod = max(maxMod, m.ModSeq)
		}
		for uid, b := range before {
			if x := after[uid]; !slices.Contains(gotU, uid) && (x.ModSeq != b.ModSeq || !sameFlags(x.Flags, b.Flags)) {
				t.Errorf("%s: UID %d not reported but changed: modseq %d -> %d, flags %s -> %s",
					s.name, uid, b.ModSeq, x.ModSeq, flagString(b.Flags), flagString(x.Flags))
			}
		}
		for uid, w := range s.wantFlags {
			if !sameFlags(after[uid].Flags, w) {
				t.Errorf("%s: UID %d flags = %s, want %s", s.name, uid, flagString(after[uid].Flags), flagString(w))
			}
		}
		st := fx.status(a.ID, inbox.ID)
		switch {
		case len(r.Updated) > 0 && st.HighestModSeq != maxMod:
			t.Errorf("%s: highestmodseq = %d, want the new modseq %d", s.name, st.HighestModSeq, maxMod)
		case len(r.Updated) == 0 && st.HighestModSeq != highest:
			t.Errorf("%s: nothing changed but highestmodseq moved %d -> %d", s.name, highest, st.HighestModSeq)
		}
		highest = max(highest, st.HighestModSeq)
	}
	// The spelling first used is kept (store contract, Flags).
	if m := meta()[u[0]]; !slices.Contains(m.Flags.Keywords, "x") {
		t.Errorf("keyword spelling: got %q, want the first spelling \"x\"", m.Flags.Keywords)
	}
	if s := fx.status(a.ID, inbox.ID); s.Deleted != 1 || s.Unseen != 4 {
		t.Errorf("status = %+v; want 1 deleted, 4 unseen", s)
	}
}

func testExpunge(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	a := fx.account("alice@example.org")
	inbox := fx.mailbox(a.ID, "INBOX")
	u := fx.appendN(a.ID, inbox.ID, 6)
	fx.storeFlags(a.ID, inbox.ID, mailstore.UIDs(u[1], u[3]), mailstore.FlagsAdd, fl(mailstore.FlagDeleted), 0)
	h := fx.status(a.ID, inbox.ID).HighestModSeq
	highest := h
	for _, tc := range []struct {
		name        string
		uids        mailstore.UIDSet
		onlyDeleted bool
		want        []uint32
		left        []uint32
	}{
		{"all \\Deleted", nil, true, []uint32{u[1], u[3]}, []uint32{u[0], u[2], u[4], u[5]}},
		{"explicit, one already gone", mailstore.UIDs(u[1], u[2]), false, []uint32{u[2]}, []uint32{u[0], u[4], u[5]}},
		{"explicit but not \\Deleted", mailstore.UIDs(u[4]), true, nil, []uint32{u[0], u[4], u[5]}},
		{"empty set", mailstore.UIDSet{}, false, nil, []uint32{u[0], u[4], u[5]}},
		{"all", nil, false, []uint32{u[0], u[4], u[5]}, nil},
		{"nothing left", nil, false, nil, nil},
	} {
		r := fx.expunge(a.ID, inbox.ID, tc.uids, tc.onlyDeleted)
		if got := sortedUIDs(r.UIDs); !equalUIDs(got, tc.want) {
			t.Errorf("Expunge %s: UIDs = %v, want %v", tc.name, got, tc.want)
		}
		s := fx.status(a.ID, inbox.ID)
		if r.HighestModSeq != s.HighestModSeq {
			t.Errorf("Expunge %s: result highestmodseq %d, status says %d", tc.name, r.HighestModSeq, s.HighestModSeq)
		}
		if len(tc.want) > 0 && r.HighestModSeq <= highest {
			t.Errorf("Expunge %s: highestmodseq %d did not grow past %d", tc.name, r.HighestModSeq, highest)
		}
		if len(tc.want) == 0 && s.HighestModSeq != highest {
			t.Errorf("Expunge %s removed nothing but highestmodseq moved %d -> %d", tc.name, highest, s.HighestModSeq)
		}
		highest = max(highest, s.HighestModSeq)
		if got := uidsOf(fx.list(a.ID, inbox.ID, nil)); !equalUIDs(got, tc.left) {
			t.Errorf("Expunge %s: left %v, want %v", tc.name, got, tc.left)
		}
		if s.Messages != uint32(len(tc.left)) {
			t.Errorf("Expunge %s: status Messages = %d, want %d", tc.name, s.Messages, len(tc.left))
		}
	}
	c := fx.changes(a.ID, inbox.ID, h)
	if got := sortedUIDs(c.Vanished); !equalUIDs(got, u) || len(c.Updated) != 0 {
		t.Errorf("Changes since before the expunges: vanished %v updated %v; want vanished %v", got, uidsOf(c.Updated), u)
	}
	fx.checkQuota(a.ID, 0, "after expunging everything")
	if s := fx.status(a.ID, inbox.ID); s.Size != 0 || s.Deleted != 0 || s.Unseen != 0 {
		t.Errorf("status after expunging everything = %+v", s)
	}
}

func testChanges(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	a := fx.account("alice@example.org")
	inbox := fx.mailbox(a.ID, "INBOX")
	h0 := fx.status(a.ID, inbox.ID).HighestModSeq
	u := fx.appendN(a.ID, inbox.ID, 3)
	highest := h0

	check := func(name string, since uint64, wantUpdated, wantVanished []uint32) mailstore.Changes {
		t.Helper()
		c := fx.changes(a.ID, inbox.ID, since)
		s := fx.status(a.ID, inbox.ID)
		if got := uidsOf(c.Updated); !equalUIDs(got, wantUpdated) {
			t.Errorf("%s: Changes(%d).Updated = %v, want %v (ascending)", name, since, got, wantUpdated)
		}
		if wantVanished != nil || since > 0 {
			if got := sortedUIDs(c.Vanished); !equalUIDs(got, wantVanished) {
				t.Errorf("%s: Changes(%d).Vanished = %v, want %v", name, since, got, wantVanished)
			}
		}
		if c.HighestModSeq != s.HighestModSeq || c.UIDNext != s.UIDNext {
			t.Errorf("%s: Changes highestmodseq/uidnext = %d/%d, status says %d/%d", name, c.HighestModSeq, c.UIDNext, s.HighestModSeq, s.UIDNext)
		}
		list := messageByUID(fx.list(a.ID, inbox.ID, nil))
		for _, m := range c.Updated {
			if m.ModSeq <= since || m.ModSeq > c.HighestModSeq {
				t.Errorf("%s: Updated %d has modseq %d outside (%d, %d]", name, m.UID, m.ModSeq, since, c.HighestModSeq)
			}
			if l := list[m.UID]; l.ModSeq != m.ModSeq || !sameFlags(l.Flags, m.Flags) || l.Size != m.Size {
				t.Errorf("%s: Updated %+v differs from listing %+v", name, m, l)
			}
		}
		return c
	}

	c1 := check("after 3 appends", h0, u, nil)
	if c1.HighestModSeq <= highest {
		t.Errorf("appends did not raise highestmodseq above %d", highest)
	}
	h1 := c1.HighestModSeq
	check("nothing new", h1, nil, nil)
	fx.storeFlags(a.ID, inbox.ID, mailstore.UIDs(u[1]), mailstore.FlagsAdd, fl(mailstore.FlagSeen), 0)
	c2 := check("after a flag change", h1, []uint32{u[1]}, nil)
	if c2.HighestModSeq <= h1 {
		t.Errorf("flag change did not raise highestmodseq above %d", h1)
	}
	h2 := c2.HighestModSeq
	fx.expunge(a.ID, inbox.ID, mailstore.UIDs(u[0]), false)
	c3 := check("after an expunge", h2, nil, []uint32{u[0]})
	if c3.HighestModSeq <= h2 {
		t.Errorf("expunge did not raise highestmodseq above %d", h2)
	}
	check("flag change and expunge", h1, []uint32{u[1]}, []uint32{u[0]})
	check("since 0 lists every live message", 0, []uint32{u[1], u[2]}, nil)
	v := fx.appendMsg(a.ID, inbox.ID, mailstore.Flags{}, fixedDate, simpleMessage("late", "l")).UID
	check("append after expunge", c3.HighestModSeq, []uint32{v}, nil)
}

func testUIDsNeverReused(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	a := fx.account("alice@example.org")
	inbox := fx.mailbox(a.ID, "INBOX")
	trash := fx.mailbox(a.ID, "Trash")
	var all []uint32
	lastNext := fx.status(a.ID, inbox.ID).UIDNext
	for round := 0; round < 3; round++ {
		u := fx.appendN(a.ID, inbox.ID, 3)
		for _, x := range u {
			if slices.Contains(all, x) || (len(all) > 0 && x <= all[len(all)-1]) {
				t.Errorf("round %d: UID %d reused or not above the previous ones %v", round, x, all)
			}
		}
		all = append(all, u...)
		// Remove them by expunge, by move, and by both.
		switch round {
		case 0:
			fx.expunge(a.ID, inbox.ID, nil, false)
		case 1:
			_, err := st.Move(ctx, a.ID, inbox.ID, mailstore.UIDSet{{Start: 1, Stop: 0}}, trash.ID)
			must(t, err, "Move 1:*")
		default:
			_, err := st.Move(ctx, a.ID, inbox.ID, mailstore.UIDs(u[2]), trash.ID)
			must(t, err, "Move")
			fx.expunge(a.ID, inbox.ID, mailstore.UIDs(u[0], u[1]), false)
		}
		s := fx.status(a.ID, inbox.ID)
		if s.Messages != 0 || s.UIDNext < lastNext || s.UIDNext <= all[len(all)-1] {
			t.Errorf("round %d: status %+v; want empty, uidnext above %d and not below %d", round, s, all[len(all)-1], lastNext)
		}
		lastNext = s.UIDNext
	}
	r := fx.deliver(simpleMessage("after all", "x"), mailstore.Recipient{AccountID: a.ID})
	if got := r.Delivered[0].UID; got <= all[len(all)-1] {
		t.Errorf("delivery after expunges got UID %d, not above %d", got, all[len(all)-1])
	}
	if fx.mailbox(a.ID, "INBOX").UIDValidity != inbox.UIDValidity {
		t.Errorf("UIDVALIDITY changed without reason: %d -> %d", inbox.UIDValidity, fx.mailbox(a.ID, "INBOX").UIDValidity)
	}
}
