package postgres_test

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// TestGroupCommitOneMailbox: many concurrent single-mailbox deliveries
// and appends to one mailbox. Some are committed together (the test
// insists on it, or it would prove nothing); every caller gets the UID of
// its own message, the UIDs are distinct, and the mailbox holds exactly
// those messages.
func TestGroupCommitOneMailbox(t *testing.T) {
	st, _, a := fixture(t)
	ctx := ctxT(t)
	in := inbox(t, st, a.ID)
	const workers, each = 12, 25
	var mu sync.Mutex
	got := map[uint32]string{} // UID -> subject its caller sent
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				subject := fmt.Sprintf("w%d-%d", w, i)
				var uid uint32
				if i%2 == 0 {
					r, err := st.Deliver(ctx, &mailstore.Delivery{Recipients: []mailstore.Recipient{{AccountID: a.ID}},
						Body: strings.NewReader(msg(subject, "body"))})
					if err != nil || len(r.Delivered) != 1 {
						t.Errorf("%s: Deliver: %v %+v", subject, err, r)
						return
					}
					uid = r.Delivered[0].UID
				} else {
					r, err := st.Append(ctx, a.ID, in.ID, mailstore.Flags{}, time.Time{}, strings.NewReader(msg(subject, "body")))
					if err != nil {
						t.Errorf("%s: Append: %v", subject, err)
						return
					}
					uid = r.UID
				}
				mu.Lock()
				if prev, dup := got[uid]; dup {
					t.Errorf("UID %d given to %s and %s", uid, prev, subject)
				}
				got[uid] = subject
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if st.GroupedCommits() == 0 {
		t.Fatal("no deliveries were committed together: the test did not exercise group commit")
	}
	t.Logf("%d group commits for %d messages", st.GroupedCommits(), workers*each)
	ms, err := st.ListMessages(ctx, a.ID, in.ID, nil)
	must(t, err)
	if len(ms) != workers*each || len(got) != workers*each {
		t.Fatalf("%d messages listed, %d UIDs returned; want %d", len(ms), len(got), workers*each)
	}
	for _, m := range ms {
		rc, err := st.OpenMessage(ctx, a.ID, in.ID, m.UID, 0, -1)
		must(t, err)
		b, err := io.ReadAll(rc)
		rc.Close()
		must(t, err)
		if !strings.Contains(string(b), "Subject: "+got[m.UID]+"\r\n") {
			t.Fatalf("UID %d was returned to %q but holds another message", m.UID, got[m.UID])
		}
	}
}

// TestGroupCommitFailureIsolation: with the quota about to run out, some
// of the concurrent deliveries to one mailbox fail. Each failure is the
// caller's own (over quota, nothing stored), every success is stored, and
// the quota use equals what is stored.
func TestGroupCommitFailureIsolation(t *testing.T) {
	st, _, a := fixture(t)
	ctx := ctxT(t)
	in := inbox(t, st, a.ID)
	body := func(i int) string { return msg(fmt.Sprintf("q%03d", i), strings.Repeat("y", 900)) }
	size := int64(len(body(0)))
	must(t, st.SetQuota(ctx, a.ID, 40*size))
	const n = 100
	var mu sync.Mutex
	ok := map[uint32]string{}
	failed := 0
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := st.Deliver(ctx, &mailstore.Delivery{Recipients: []mailstore.Recipient{{AccountID: a.ID}}, Body: strings.NewReader(body(i))})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok[r.Delivered[0].UID] = fmt.Sprintf("q%03d", i)
			case errors.Is(err, mailstore.ErrOverQuota):
				failed++
			default:
				t.Errorf("delivery %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if st.GroupFallbacks() == 0 {
		t.Fatal("no shared transaction failed: the test did not exercise the fallback")
	}
	if len(ok) != 40 || failed != n-40 {
		t.Errorf("%d delivered, %d over quota; want 40 and %d", len(ok), failed, n-40)
	}
	ms, err := st.ListMessages(ctx, a.ID, in.ID, nil)
	must(t, err)
	if len(ms) != len(ok) {
		t.Fatalf("%d messages stored, %d acknowledged", len(ms), len(ok))
	}
	for _, m := range ms {
		if _, found := ok[m.UID]; !found {
			t.Fatalf("UID %d stored but its caller was told it failed", m.UID)
		}
	}
	used, _, err := st.QuotaUsage(ctx, a.ID)
	must(t, err)
	if used != int64(len(ok))*size {
		t.Errorf("quota used %d, want %d", used, int64(len(ok))*size)
	}
}
