package storetest

import (
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// cutReader returns the first n octets of data, then err: a client whose
// connection closed (err wraps io.ErrUnexpectedEOF, as the frontends'
// readers return it) before the octets it announced were sent. With
// together set, the last octets come back in the same call as the error.
type cutReader struct {
	data     []byte
	err      error
	together bool
}

func (r *cutReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	if r.together && len(r.data) == 0 {
		return n, r.err
	}
	return n, nil
}

// testTruncatedBody checks the contract that a body ends only at io.EOF:
// a reader that fails with io.ErrUnexpectedEOF (bare or wrapped) after any
// number of octets, on a chunk boundary or off it, for a small or a large
// message, makes Deliver and Append fail with ErrTruncated and leaves the
// store unchanged. io.ReadFull would take such a reader's error for the
// end of a short message, which stored truncated mail (issue 9).
func testTruncatedBody(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	alice := fx.account("alice@example.org")
	bob := fx.account("bob@example.org")
	inbox := fx.mailbox(alice.ID, "INBOX")
	fx.deliver(simpleMessage("existing", "e"), mailstore.Recipient{AccountID: alice.ID})

	errs := []struct {
		name string
		err  error
	}{
		{"bare ErrUnexpectedEOF", io.ErrUnexpectedEOF},
		{"wrapped ErrUnexpectedEOF", fmt.Errorf("read tcp 127.0.0.1:143: %w", io.ErrUnexpectedEOF)},
		{"other error", errClientGone},
	}
	// Sizes around the chunk sizes a backend is likely to use, and the
	// point where the body is cut.
	cuts := []struct{ size, cut int }{
		{1000, 0},
		{1000, 35},
		{1000, 1000}, // every octet sent, then an error instead of EOF
		{64 << 10, 64<<10 - 1},
		{256 << 10, 256 << 10},
		{256<<10 + 1, 256 << 10},
		{1 << 20, 100_000},
		{1 << 20, 300_000},
		{1 << 20, 512 << 10},
		{3 << 20, 3<<20 - 7},
	}
	snap := fx.snapshot()
	for _, e := range errs {
		for i, c := range cuts {
			body := genMessage(int64(c.size), uint64(i+1))[:c.cut]
			for _, together := range []bool{false, true} {
				name := fmt.Sprintf("%s after %d of %d octets (together=%v)", e.name, c.cut, c.size, together)
				_, err := st.Deliver(ctx, &mailstore.Delivery{
					Recipients: []mailstore.Recipient{{AccountID: alice.ID}, {AccountID: bob.ID}},
					Body:       &cutReader{data: body, err: e.err, together: together},
				})
				checkTruncated(t, "Deliver "+name, err, e.err)
				_, err = st.Append(ctx, alice.ID, inbox.ID, mailstore.Flags{}, time.Time{}, &cutReader{data: body, err: e.err, together: together})
				checkTruncated(t, "Append "+name, err, e.err)
				after := fx.snapshot()
				if d := diffSnapshots(snap, after); d != "" {
					t.Errorf("%s changed the store:%s", name, d)
					snap = after
				}
			}
		}
	}
	// The same bodies end well at io.EOF: the reader, not the length, is
	// what made them fail.
	body := genMessage(300_000, 99)
	res, err := st.Append(ctx, alice.ID, inbox.ID, mailstore.Flags{}, time.Time{}, &cutReader{data: body, err: io.EOF, together: true})
	must(t, err, "Append ending in io.EOF")
	if got := fx.mustRead(alice.ID, inbox.ID, res.UID); len(got) != len(body) {
		t.Errorf("Append ending in io.EOF stored %d octets, want %d", len(got), len(body))
	}
}

func checkTruncated(t *testing.T, what string, err, cause error) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s: stored, want an error", what)
	case !errors.Is(err, mailstore.ErrTruncated):
		t.Errorf("%s: error %v, want one wrapping mailstore.ErrTruncated", what, err)
	case !errors.Is(err, cause):
		t.Errorf("%s: error %v does not wrap the reader's error %v", what, err, cause)
	}
}
