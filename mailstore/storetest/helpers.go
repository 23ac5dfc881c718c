package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// testTimeout bounds every store call of one subtest, so that a hung backend
// fails the subtest instead of the whole test binary.
const testTimeout = 5 * time.Minute

// fixture bundles a store with the test's context and helpers that fail the
// test on unexpected errors.
type fixture struct {
	t   *testing.T
	ctx context.Context
	st  mailstore.Store
}

func newFixture(t *testing.T, f Factory) *fixture {
	t.Helper()
	return fixtureFor(t, f.New(t))
}

func fixtureFor(t *testing.T, st mailstore.Store) *fixture {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return &fixture{t: t, ctx: ctx, st: st}
}

// pair returns fixtures for two handles on one database, skipping the test
// when the factory has none.
func pair(t *testing.T, f Factory) (a, b *fixture) {
	t.Helper()
	if f.NewPair == nil {
		t.Skip("Factory.NewPair is nil: no cross-handle checks")
	}
	sa, sb := f.NewPair(t)
	return fixtureFor(t, sa), fixtureFor(t, sb)
}

func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: unexpected error: %v", what, err)
	}
}

// wantErr checks that err matches one of targets (errors.Is).
func wantErr(t *testing.T, err error, what string, targets ...error) bool {
	t.Helper()
	if err == nil {
		t.Errorf("%s: got no error, want %v", what, targets)
		return false
	}
	for _, target := range targets {
		if errors.Is(err, target) {
			return true
		}
	}
	t.Errorf("%s: got error %q, want one matching %v", what, err, targets)
	return false
}

func (fx *fixture) domain(name string) {
	fx.t.Helper()
	must(fx.t, fx.st.CreateDomain(fx.ctx, name), "CreateDomain "+name)
}

// account creates an account, creating its domain first when needed.
func (fx *fixture) account(addr string) mailstore.Account {
	fx.t.Helper()
	_, dom := mailstore.SplitAddress(addr)
	ok, err := fx.st.IsLocalDomain(fx.ctx, dom)
	must(fx.t, err, "IsLocalDomain "+dom)
	if !ok {
		fx.domain(dom)
	}
	a, err := fx.st.CreateAccount(fx.ctx, addr, "{TEST}hash-of-"+addr)
	must(fx.t, err, "CreateAccount "+addr)
	return a
}

func (fx *fixture) mailbox(acct int64, name string) mailstore.Mailbox {
	fx.t.Helper()
	mb, err := fx.st.GetMailbox(fx.ctx, acct, name)
	must(fx.t, err, "GetMailbox "+name)
	return mb
}

func (fx *fixture) createMailbox(acct int64, name, use string) mailstore.Mailbox {
	fx.t.Helper()
	mb, err := fx.st.CreateMailbox(fx.ctx, acct, name, use)
	must(fx.t, err, "CreateMailbox "+name)
	return mb
}

func (fx *fixture) status(acct, mbox int64) mailstore.MailboxStatus {
	fx.t.Helper()
	s, err := fx.st.MailboxStatus(fx.ctx, acct, mbox)
	must(fx.t, err, "MailboxStatus")
	return s
}

func (fx *fixture) appendMsg(acct, mbox int64, flags mailstore.Flags, date time.Time, body []byte) mailstore.AppendResult {
	fx.t.Helper()
	r, err := fx.st.Append(fx.ctx, acct, mbox, flags, date, bytes.NewReader(body))
	must(fx.t, err, "Append")
	if r.Size != int64(len(body)) {
		fx.t.Errorf("Append: Size = %d, want %d", r.Size, len(body))
	}
	return r
}

// appendN appends n small distinct messages and returns their UIDs.
func (fx *fixture) appendN(acct, mbox int64, n int) []uint32 {
	fx.t.Helper()
	uids := make([]uint32, n)
	for i := range uids {
		uids[i] = fx.appendMsg(acct, mbox, mailstore.Flags{}, time.Time{}, simpleMessage(fmt.Sprintf("message %d", i), strings.Repeat("x", i*10))).UID
	}
	return uids
}

func (fx *fixture) deliver(body []byte, rcpts ...mailstore.Recipient) mailstore.DeliveryResult {
	fx.t.Helper()
	r, err := fx.st.Deliver(fx.ctx, &mailstore.Delivery{
		MailFrom:   "sender@remote.example",
		Recipients: rcpts,
		Body:       bytes.NewReader(body),
	})
	must(fx.t, err, "Deliver")
	return r
}

func (fx *fixture) list(acct, mbox int64, uids mailstore.UIDSet) []mailstore.MessageMeta {
	fx.t.Helper()
	m, err := fx.st.ListMessages(fx.ctx, acct, mbox, uids)
	must(fx.t, err, "ListMessages")
	return m
}

func (fx *fixture) changes(acct, mbox int64, since uint64) mailstore.Changes {
	fx.t.Helper()
	c, err := fx.st.Changes(fx.ctx, acct, mbox, since)
	must(fx.t, err, "Changes")
	return c
}

func (fx *fixture) read(acct, mbox int64, uid uint32, off, n int64) ([]byte, error) {
	rc, err := fx.st.OpenMessage(fx.ctx, acct, mbox, uid, off, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func (fx *fixture) mustRead(acct, mbox int64, uid uint32) []byte {
	fx.t.Helper()
	b, err := fx.read(acct, mbox, uid, 0, -1)
	must(fx.t, err, fmt.Sprintf("OpenMessage uid %d", uid))
	return b
}

func (fx *fixture) usage(acct int64) (used, limit int64) {
	fx.t.Helper()
	used, limit, err := fx.st.QuotaUsage(fx.ctx, acct)
	must(fx.t, err, "QuotaUsage")
	return used, limit
}

// sumSizes adds up the sizes of every message in every mailbox of acct.
func (fx *fixture) sumSizes(acct int64) int64 {
	fx.t.Helper()
	mbs, err := fx.st.ListMailboxes(fx.ctx, acct)
	must(fx.t, err, "ListMailboxes")
	var sum int64
	for _, mb := range mbs {
		for _, m := range fx.list(acct, mb.ID, nil) {
			sum += m.Size
		}
	}
	return sum
}

// countMessages counts the messages in every mailbox of acct.
func (fx *fixture) countMessages(acct int64) int64 {
	fx.t.Helper()
	mbs, err := fx.st.ListMailboxes(fx.ctx, acct)
	must(fx.t, err, "ListMailboxes")
	var n int64
	for _, mb := range mbs {
		n += int64(len(fx.list(acct, mb.ID, nil)))
	}
	return n
}

// checkQuota verifies that the account's quota usage equals the sum of its
// message sizes (and want, when want >= 0), and that its message usage
// equals the number of its messages.
func (fx *fixture) checkQuota(acct int64, want int64, when string) {
	fx.t.Helper()
	used, _ := fx.usage(acct)
	sum := fx.sumSizes(acct)
	if used != sum {
		fx.t.Errorf("%s: QuotaUsage used = %d, sum of message sizes = %d", when, used, sum)
	}
	q, err := fx.st.Quota(fx.ctx, acct)
	must(fx.t, err, "Quota")
	if q.StorageUsed != used {
		fx.t.Errorf("%s: Quota().StorageUsed = %d, QuotaUsage = %d", when, q.StorageUsed, used)
	}
	if n := fx.countMessages(acct); q.MessagesUsed != n {
		fx.t.Errorf("%s: Quota().MessagesUsed = %d, messages stored = %d", when, q.MessagesUsed, n)
	}
	if want >= 0 && used != want {
		fx.t.Errorf("%s: QuotaUsage used = %d, want %d", when, used, want)
	}
}

func (fx *fixture) storeFlags(acct, mbox int64, uids mailstore.UIDSet, op mailstore.FlagOp, fl mailstore.Flags, unchangedSince uint64) mailstore.StoreResult {
	fx.t.Helper()
	r, err := fx.st.StoreFlags(fx.ctx, acct, mbox, uids, op, fl, unchangedSince)
	must(fx.t, err, "StoreFlags")
	return r
}

func (fx *fixture) expunge(acct, mbox int64, uids mailstore.UIDSet, onlyDeleted bool) mailstore.ExpungeResult {
	fx.t.Helper()
	r, err := fx.st.Expunge(fx.ctx, acct, mbox, uids, onlyDeleted)
	must(fx.t, err, "Expunge")
	return r
}

// fixedDate is an internal date with whole seconds.
var fixedDate = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// msgCounter makes Message-IDs unique across the suite.
var msgCounter atomic.Int64

// simpleMessage builds a small text/plain message with CRLF line endings.
func simpleMessage(subject, body string) []byte {
	return buildMessage([]string{
		"From: Sender <sender@remote.example>",
		"To: rcpt@example.org",
		"Subject: " + subject,
		"Date: Mon, 01 Jan 2024 12:00:00 +0000",
		fmt.Sprintf("Message-ID: <m%d@remote.example>", msgCounter.Add(1)),
		"MIME-Version: 1.0",
		"Content-Type: text/plain; charset=utf-8",
	}, body)
}

// buildMessage joins header lines and a body (LF or CRLF) into a message
// with CRLF line endings, ending in CRLF.
func buildMessage(header []string, body string) []byte {
	var b strings.Builder
	for _, h := range header {
		b.WriteString(h)
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	body = strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n")
	b.WriteString(body)
	if !strings.HasSuffix(body, "\r\n") {
		b.WriteString("\r\n")
	}
	return []byte(b.String())
}

func uidsOf(ms []mailstore.MessageMeta) []uint32 {
	u := make([]uint32, len(ms))
	for i, m := range ms {
		u[i] = m.UID
	}
	return u
}

func sortedUIDs(u []uint32) []uint32 {
	c := slices.Clone(u)
	slices.Sort(c)
	return c
}

func equalUIDs(a, b []uint32) bool {
	return slices.Equal(a, b) || (len(a) == 0 && len(b) == 0)
}

func strictlyAscending(u []uint32) bool {
	for i := 1; i < len(u); i++ {
		if u[i] <= u[i-1] {
			return false
		}
	}
	return true
}

// keywordSet returns the keywords lower-cased and sorted.
func keywordSet(k []string) []string {
	s := make([]string, len(k))
	for i, w := range k {
		s[i] = strings.ToLower(w)
	}
	slices.Sort(s)
	return s
}

// sameFlags compares flags, keywords case-insensitively and as a set; it
// also fails when a keyword appears twice.
func sameFlags(a, b mailstore.Flags) bool {
	ka, kb := keywordSet(a.Keywords), keywordSet(b.Keywords)
	return a.System == b.System && slices.Equal(ka, kb) &&
		len(slices.Compact(slices.Clone(ka))) == len(ka)
}

func flagString(f mailstore.Flags) string {
	var parts []string
	names := []struct {
		f mailstore.SystemFlag
		n string
	}{
		{mailstore.FlagSeen, `\Seen`}, {mailstore.FlagAnswered, `\Answered`},
		{mailstore.FlagFlagged, `\Flagged`}, {mailstore.FlagDeleted, `\Deleted`},
		{mailstore.FlagDraft, `\Draft`},
	}
	for _, n := range names {
		if f.System&n.f != 0 {
			parts = append(parts, n.n)
		}
	}
	if rest := f.System &^ (mailstore.FlagSeen | mailstore.FlagAnswered | mailstore.FlagFlagged | mailstore.FlagDeleted | mailstore.FlagDraft); rest != 0 {
		parts = append(parts, fmt.Sprintf("unknown(%#x)", uint8(rest)))
	}
	kw := slices.Clone(f.Keywords)
	slices.SortFunc(kw, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })
	parts = append(parts, kw...)
	return "(" + strings.Join(parts, " ") + ")"
}

// sameSecond compares instants to the second (stores may keep less
// precision than Go).
func sameSecond(a, b time.Time) bool {
	return a.Unix() == b.Unix()
}

// messageByUID indexes a listing.
func messageByUID(ms []mailstore.MessageMeta) map[uint32]mailstore.MessageMeta {
	m := make(map[uint32]mailstore.MessageMeta, len(ms))
	for _, x := range ms {
		m[x.UID] = x
	}
	return m
}

// sameMetas compares listings field by field (dates to the second).
func sameMetas(a, b []mailstore.MessageMeta) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.UID != y.UID || x.ModSeq != y.ModSeq || x.Size != y.Size || !sameFlags(x.Flags, y.Flags) || !sameSecond(x.InternalDate, y.InternalDate) {
			return false
		}
	}
	return true
}
