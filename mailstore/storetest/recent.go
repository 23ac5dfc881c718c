package storetest

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// claim calls ClaimRecent and checks that the UIDs come ascending.
func (fx *fixture) claim(acct, mbox int64) []uint32 {
	fx.t.Helper()
	u, err := fx.st.ClaimRecent(fx.ctx, acct, mbox)
	must(fx.t, err, "ClaimRecent")
	if !slices.IsSorted(u) {
		fx.t.Errorf("ClaimRecent returned UIDs out of order: %v", u)
	}
	return u
}

func (fx *fixture) wantRecent(acct, mbox int64, want uint32, when string) {
	fx.t.Helper()
	if got := fx.status(acct, mbox).Recent; got != want {
		fx.t.Errorf("%s: MailboxStatus.Recent = %d, want %d", when, got, want)
	}
}

// testRecentClaim: new messages (append, delivery, copy, move) are recent
// until claimed; a claim takes each exactly once; expunged messages are
// neither returned nor counted.
func testRecentClaim(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	a := fx.account("alice@example.org")
	inbox := fx.mailbox(a.ID, "INBOX")
	other := fx.createMailbox(a.ID, "Other", "")

	if u := fx.claim(a.ID, inbox.ID); len(u) != 0 {
		t.Errorf("claim of an empty mailbox = %v, want none", u)
	}
	fx.wantRecent(a.ID, inbox.ID, 0, "empty mailbox")

	first := fx.appendN(a.ID, inbox.ID, 3)
	fx.wantRecent(a.ID, inbox.ID, 3, "after 3 appends")
	if u := fx.claim(a.ID, inbox.ID); !slices.Equal(u, first) {
		t.Errorf("first claim = %v, want %v", u, first)
	}
	fx.wantRecent(a.ID, inbox.ID, 0, "after the claim")
	if u := fx.claim(a.ID, inbox.ID); len(u) != 0 {
		t.Errorf("second claim = %v, want none", u)
	}

	// Flag changes do not make a message recent again.
	fx.storeFlags(a.ID, inbox.ID, mailstore.UIDs(first...), mailstore.FlagsAdd, fl(mailstore.FlagSeen), 0)
	fx.wantRecent(a.ID, inbox.ID, 0, "after STORE")

	// Delivery, copy and move add recent messages to the target.
	d := fx.deliver(simpleMessage("delivered", "d"), mailstore.Recipient{AccountID: a.ID}).Delivered[0].UID
	ou := fx.appendN(a.ID, other.ID, 3)
	cp, err := fx.st.Copy(fx.ctx, a.ID, other.ID, mailstore.UIDs(ou[0]), inbox.ID)
	must(t, err, "Copy")
	mv, err := fx.st.Move(fx.ctx, a.ID, other.ID, mailstore.UIDs(ou[1]), inbox.ID)
	must(t, err, "Move")
	fx.wantRecent(a.ID, inbox.ID, 3, "after deliver, copy and move")
	// The source's messages are still recent there: nobody claimed them.
	fx.wantRecent(a.ID, other.ID, 2, "source after copy and move")

	// An expunged recent message is neither counted nor returned.
	fx.expunge(a.ID, inbox.ID, mailstore.UIDs(cp.DstUIDs[0]), false)
	want := []uint32{d, mv.DstUIDs[0]}
	fx.wantRecent(a.ID, inbox.ID, 2, "after expunging a recent message")
	if u := fx.claim(a.ID, inbox.ID); !slices.Equal(u, want) {
		t.Errorf("claim after deliver/copy/move/expunge = %v, want %v", u, want)
	}
	fx.wantRecent(a.ID, inbox.ID, 0, "after the last claim")
	if u := fx.claim(a.ID, other.ID); !slices.Equal(u, []uint32{ou[0], ou[2]}) {
		t.Errorf("claim of the source = %v, want %v", u, []uint32{ou[0], ou[2]})
	}
}

// testRecentReadsDoNotClaim: what EXAMINE, STATUS, FETCH and SEARCH use
// leaves the recent status alone.
func testRecentReadsDoNotClaim(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	a := fx.account("alice@example.org")
	inbox := fx.mailbox(a.ID, "INBOX")
	uids := fx.appendN(a.ID, inbox.ID, 4)
	all := mailstore.UIDSet{{Start: 1, Stop: 0}}
	for i := 0; i < 2; i++ {
		fx.wantRecent(a.ID, inbox.ID, 4, "after reads")
		fx.mailbox(a.ID, "INBOX")
		fx.list(a.ID, inbox.ID, nil)
		fx.changes(a.ID, inbox.ID, 0)
		_, err := fx.st.FetchDetails(fx.ctx, a.ID, inbox.ID, all)
		must(t, err, "FetchDetails")
		_, err = fx.st.Search(fx.ctx, a.ID, inbox.ID, &mailstore.SearchCriteria{})
		must(t, err, "Search")
		fx.mustRead(a.ID, inbox.ID, uids[0])
	}
	if u := fx.claim(a.ID, inbox.ID); !slices.Equal(u, uids) {
		t.Errorf("claim after reads = %v, want %v", u, uids)
	}
}

// testRecentConcurrent: claimers on two handles ("two nodes") race with
// appends; every UID goes to exactly one claimer.
func testRecentConcurrent(t *testing.T, f Factory) {
	var fa, fb *fixture
	if f.NewPair != nil {
		fa, fb = pair(t, f)
	} else {
		fa = newFixture(t, f)
		fb = fa
	}
	a := fa.account("alice@example.org")
	inbox := fa.mailbox(a.ID, "INBOX")
	const appends = 40
	const claimersPerHandle = 3

	var (
		mu      sync.Mutex
		claimed = map[uint32]string{} // UID → claimer
		dup     []string
	)
	record := func(who string, us []uint32) {
		mu.Lock()
		defer mu.Unlock()
		for _, u := range us {
			if prev, ok := claimed[u]; ok {
				dup = append(dup, fmt.Sprintf("UID %d claimed by %s and %s", u, prev, who))
				continue
			}
			claimed[u] = who
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 2*claimersPerHandle+1)
	for h, fx := range []*fixture{fa, fb} {
		for i := 0; i < claimersPerHandle; i++ {
			who := fmt.Sprintf("handle %d claimer %d", h, i)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					us, err := fx.st.ClaimRecent(fx.ctx, a.ID, inbox.ID)
					if err != nil {
						errs <- fmt.Errorf("%s: %w", who, err)
						return
					}
					record(who, us)
					select {
					case <-stop:
						return
					default:
						time.Sleep(time.Millisecond)
					}
				}
			}()
		}
	}
	var appended []uint32
	for i := 0; i < appends; i++ {
		r, err := fa.st.Append(fa.ctx, a.ID, inbox.ID, mailstore.Flags{}, time.Time{},
			bytes.NewReader(simpleMessage(fmt.Sprintf("race %d", i), "x")))
		if err != nil {
			errs <- err
			break
		}
		appended = append(appended, r.UID)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// What the racers left over.
	record("final claim on handle 1", fb.claim(a.ID, inbox.ID))
	for _, d := range dup {
		t.Error(d)
	}
	var got []uint32
	for u := range claimed {
		got = append(got, u)
	}
	slices.Sort(got)
	if !slices.Equal(got, appended) {
		t.Errorf("union of the claims = %v, want every appended UID %v", got, appended)
	}
	fa.wantRecent(a.ID, inbox.ID, 0, "after all claims")
}

// testRecentIsolation: a claim on another account's mailbox (or a missing
// one) fails with ErrNoSuchMailbox and takes nothing.
func testRecentIsolation(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	alice := fx.account("alice@example.org")
	bob := fx.account("bob@example.org")
	bIn := fx.mailbox(bob.ID, "INBOX")
	aIn := fx.mailbox(alice.ID, "INBOX")
	bu := fx.appendN(bob.ID, bIn.ID, 2)
	for _, tc := range []struct {
		who        string
		acct, mbox int64
	}{
		{"alice on bob's INBOX", alice.ID, bIn.ID},
		{"alice on a missing mailbox", alice.ID, aIn.ID + bIn.ID + 1_000_000},
	} {
		u, err := fx.st.ClaimRecent(fx.ctx, tc.acct, tc.mbox)
		wantErr(t, err, "ClaimRecent by "+tc.who, mailstore.ErrNoSuchMailbox)
		if len(u) > 0 {
			t.Errorf("ClaimRecent by %s returned %v", tc.who, u)
		}
	}
	fx.wantRecent(bob.ID, bIn.ID, 2, "bob's INBOX after alice's attempt")
	if u := fx.claim(bob.ID, bIn.ID); !slices.Equal(u, bu) {
		t.Errorf("bob's claim = %v, want %v", u, bu)
	}
}
