package postgres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore"
)

// TestNoDeadlocks runs multi-recipient deliveries (recipients in shuffled
// order, some accounts with two target mailboxes), flag changes, copies,
// moves, expunges (real and no-op) and \Recent claims of the same accounts
// at once, and queue workers that
// finish and remove the items of deliveries with remote recipients (which
// share those contents), with PostgreSQL's
// deadlock_timeout raised to a minute. The lock order of 0002/0003 says no
// cycle can form; a deadlock would not be detected and retried within the
// test's 45 s but would hang a write until the context ends, failing the
// test. (With the default 1 s timeout a deadlock is only slow: it is
// retried.)
func TestNoDeadlocks(t *testing.T) {
	base := pgtest.NewDatabase(t)
	setup := pgtest.OpenStore(t, base)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	var super bool
	must(t, setup.Pool().QueryRow(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&super))
	if !super {
		t.Skip("deadlock_timeout can only be raised by a superuser")
	}
	st := pgtest.OpenStore(t, base+sep(base)+"deadlock_timeout=60s")
	var dt string
	must(t, st.Pool().QueryRow(ctx, `SHOW deadlock_timeout`).Scan(&dt))
	if dt != "1min" {
		t.Fatalf("deadlock_timeout = %q, want 1min", dt)
	}
	must(t, st.CreateDomain(ctx, "example.org"))
	const naccts = 12
	accts := make([]mailstore.Account, naccts)
	inboxes := make([]mailstore.Mailbox, naccts)
	archives := make([]mailstore.Mailbox, naccts)
	for i := range accts {
		a, err := st.CreateAccount(ctx, fmt.Sprintf("u%d@example.org", i), "hash")
		must(t, err)
		accts[i] = a
		inboxes[i] = inbox(t, st, a.ID)
		archives[i], err = st.GetMailbox(ctx, a.ID, "Archive")
		must(t, err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	worker := func(seed uint64, fn func(rng *rand.Rand, i int) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 1))
			for i := 0; i < 40; i++ {
				if err := fn(rng, i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for w := 0; w < 4; w++ {
		worker(uint64(w), func(rng *rand.Rand, i int) error {
			var rc []mailstore.Recipient
			for _, k := range rng.Perm(naccts)[:2+rng.IntN(naccts-1)] {
				rc = append(rc, mailstore.Recipient{AccountID: accts[k].ID})
				if rng.IntN(4) == 0 {
					rc = append(rc, mailstore.Recipient{AccountID: accts[k].ID, Mailbox: "Archive"})
				}
			}
			// Some bodies repeat, so contents are shared and released.
			body := msg(fmt.Sprintf("w%d-%d", w, rng.IntN(8)), strings.Repeat("x", 100))
			var remote []mailstore.RemoteRecipient
			switch rng.IntN(4) {
			case 0:
				remote = []mailstore.RemoteRecipient{{Address: "x@remote.example"}}
			case 1:
				remote, rc = []mailstore.RemoteRecipient{{Address: "y@remote.example"}}, nil
			}
			_, err := st.Deliver(ctx, &mailstore.Delivery{Recipients: rc, Remote: remote, Body: strings.NewReader(body)})
			return err
		})
	}
	for w := 0; w < 3; w++ {
		worker(uint64(100+w), func(rng *rand.Rand, i int) error {
			k := rng.IntN(naccts)
			a, in, ar := accts[k].ID, inboxes[k].ID, archives[k].ID
			all := mailstore.UIDSet{{Start: 1, Stop: 0}}
			var err error
			switch rng.IntN(7) {
			case 0:
				_, err = st.StoreFlags(ctx, a, in, all, mailstore.FlagsAdd, mailstore.Flags{System: mailstore.FlagSeen}, 0)
			case 1:
				_, err = st.Copy(ctx, a, in, all, ar)
			case 2:
				_, err = st.Move(ctx, a, ar, all, in)
			case 3:
				_, err = st.Expunge(ctx, a, ar, nil, false)
			case 4:
				// \Recent claims lock the watermark row (0009), with a
				// foreign-key check on the mailbox at the first claim.
				_, err = st.ClaimRecent(ctx, a, []int64{in, ar}[rng.IntN(2)])
			case 5:
				_, err = st.StoreFlags(ctx, a, ar, all, mailstore.FlagOp(rng.IntN(2)+1), mailstore.Flags{System: mailstore.FlagDeleted}, 0)
			default:
				_, err = st.Expunge(ctx, a, in, all, true)
			}
			return err
		})
	}
	for w := 0; w < 2; w++ {
		worker(uint64(200+w), func(rng *rand.Rand, i int) error {
			return queueWork(ctx, st, fmt.Sprintf("q%d", w), rng)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func sep(url string) string {
	if strings.Contains(url, "?") {
		return "&"
	}
	return "?"
}
