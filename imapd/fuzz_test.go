package imapd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/frontend"
	"github.com/postrider/postrider/mailstore"
)

// fuzzStore lets the command handlers run to their store calls: parsing is
// complete before any store call, and every call fails or finds nothing.
type fuzzStore struct{ Store } // IMAP's narrow Store; what the fuzzer calls is implemented below

var errFuzz = mailstore.ErrNoSuchMailbox

func (fuzzStore) CreateMailbox(context.Context, int64, string, string) (mailstore.Mailbox, error) {
	return mailstore.Mailbox{}, errFuzz
}
func (fuzzStore) DeleteMailbox(context.Context, int64, string) error         { return errFuzz }
func (fuzzStore) RenameMailbox(context.Context, int64, string, string) error { return errFuzz }
func (fuzzStore) GetMailbox(context.Context, int64, string) (mailstore.Mailbox, error) {
	return mailstore.Mailbox{}, errFuzz
}
func (fuzzStore) ListMailboxes(context.Context, int64) ([]mailstore.Mailbox, error) {
	return []mailstore.Mailbox{{ID: 1, Name: "INBOX"}, {ID: 2, Name: "a/b", SpecialUse: `\Sent`}}, nil
}
func (fuzzStore) ListSubscriptions(context.Context, int64) ([]string, error) {
	return []string{"INBOX", "x/y"}, nil
}
func (fuzzStore) MailboxStatus(context.Context, int64, int64) (mailstore.MailboxStatus, error) {
	return mailstore.MailboxStatus{}, nil
}
func (fuzzStore) SetSubscribed(context.Context, int64, string, bool) error { return nil }
func (fuzzStore) QuotaUsage(context.Context, int64) (int64, int64, error)  { return 0, 0, nil }
func (fuzzStore) Copy(context.Context, int64, int64, mailstore.UIDSet, int64) (mailstore.CopyResult, error) {
	return mailstore.CopyResult{}, errFuzz
}
func (fuzzStore) Move(context.Context, int64, int64, mailstore.UIDSet, int64) (mailstore.CopyResult, error) {
	return mailstore.CopyResult{}, errFuzz
}
func (fuzzStore) StoreFlags(context.Context, int64, int64, mailstore.UIDSet, mailstore.FlagOp, mailstore.Flags, uint64) (mailstore.StoreResult, error) {
	return mailstore.StoreResult{}, nil
}
func (fuzzStore) Expunge(context.Context, int64, int64, mailstore.UIDSet, bool) (mailstore.ExpungeResult, error) {
	return mailstore.ExpungeResult{}, nil
}
func (fuzzStore) ListMessages(context.Context, int64, int64, mailstore.UIDSet) ([]mailstore.MessageMeta, error) {
	return nil, nil
}
func (fuzzStore) Changes(context.Context, int64, int64, uint64) (mailstore.Changes, error) {
	return mailstore.Changes{}, nil
}
func (fuzzStore) FetchDetails(context.Context, int64, int64, mailstore.UIDSet) ([]mailstore.MessageDetail, error) {
	return nil, nil
}
func (fuzzStore) Search(context.Context, int64, int64, *mailstore.SearchCriteria) ([]uint32, error) {
	return nil, nil
}
func (fuzzStore) ClaimRecent(context.Context, int64, int64) ([]uint32, error) { return nil, nil }
func (fuzzStore) Subscribe(int64) (<-chan struct{}, func())                   { return nil, func() {} }
func (fuzzStore) ChangeMark() mailstore.ChangeMark                            { return 0 }
func (fuzzStore) MayHaveChanged(int64, int64, uint64, mailstore.ChangeMark) bool {
	return true
}
func (fuzzStore) MailboxStatusByName(context.Context, int64, string) (mailstore.MailboxStatus, error) {
	return mailstore.MailboxStatus{}, errFuzz
}
func (fuzzStore) SelectMailbox(context.Context, int64, string, bool) (mailstore.Selection, error) {
	return mailstore.Selection{}, errFuzz
}
func (fuzzStore) MessageContents(_ context.Context, _, _ int64, refs []mailstore.ContentRef) ([]mailstore.MessageContent, error) {
	return make([]mailstore.MessageContent, len(refs)), nil
}

// fuzzAuth refuses every login.
type fuzzAuth struct{}

func (fuzzAuth) Authenticate(context.Context, string, string, netip.Addr) (mailstore.Account, error) {
	return mailstore.Account{}, errFuzz
}
func (fuzzAuth) Mechanisms() []string { return []string{"PLAIN", "LOGIN"} }
func (fuzzAuth) NewSASL(string, netip.Addr) (saslSession, error) {
	return fuzzSASL{}, nil
}
func (fuzzAuth) failure(error) authFailure { return authInvalid }

type fuzzSASL struct{}

func (fuzzSASL) Next(_ context.Context, resp []byte) ([]byte, bool, error) {
	if resp == nil {
		return []byte{}, false, nil
	}
	return nil, false, errFuzz
}
func (fuzzSASL) Account() mailstore.Account { return mailstore.Account{} }

// memConn is a net.Conn reading from a buffer and discarding writes.
type memConn struct {
	r *bytes.Reader
	w io.Writer
}

func (m *memConn) Read(b []byte) (int, error)       { return m.r.Read(b) }
func (m *memConn) Write(b []byte) (int, error)      { return m.w.Write(b) }
func (m *memConn) Close() error                     { return nil }
func (m *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 143} }
func (m *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555} }
func (m *memConn) SetDeadline(time.Time) error      { return nil }
func (m *memConn) SetReadDeadline(time.Time) error  { return nil }
func (m *memConn) SetWriteDeadline(time.Time) error { return nil }

// runCommands feeds input to a connection in the given state and runs
// commands until the input ends. It returns what the server wrote.
func runCommands(tb testing.TB, input []byte, state connState, out io.Writer) {
	runCommandsOn(tb, fuzzStore{}, input, state, out)
}

// runCommandsOn is runCommands with another store.
func runCommandsOn(tb testing.TB, st Store, input []byte, state connState, out io.Writer) {
	srv, err := newServer(Config{
		Config: frontend.Config{Hostname: "fuzz", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		Limits: Limits{MaxErrors: 1 << 30, MaxErrorsPreAuth: 1 << 30, MaxAuthFailures: 1 << 30, FetchBatch: 4},
	}, st, fuzzAuth{})
	if err != nil {
		tb.Fatal(err)
	}
	nc := &memConn{r: bytes.NewReader(input), w: out}
	c := srv.newConn(srv.fe.DetachedConn(nc))
	c.state = state
	if state != stateNotAuth {
		c.acct = mailstore.Account{ID: 1}
	}
	if state == stateSelected {
		c.sel = &selected{mbox: mailstore.Mailbox{ID: 1, Name: "INBOX", UIDNext: 41}, cancel: func() {}, saved: []uint32{3, 5}}
		for u := uint32(1); u <= 40; u += 2 {
			cid := int64(u)
			if u%10 == 9 {
				cid = 0 // not known to the view (mailstore.ContentRef)
			}
			c.sel.add(mailstore.MessageMeta{UID: u, ModSeq: 1, ContentID: cid})
		}
	}
	for i := 0; i < 10000 && c.state != stateLogout; i++ {
		if err := c.serveCommand(); err != nil {
			break
		}
	}
	c.cancel()
}

var fuzzSeeds = []string{
	"a CAPABILITY\r\n", "a NOOP\r\n", "a LOGOUT\r\n", `a ID ("name" "x" "version" NIL)` + "\r\n", "a ID NIL\r\n",
	"a LOGIN alice@example.org secret\r\n", "a LOGIN {5}\r\nalice {6+}\r\nsecret\r\n", `a LOGIN "a\"b" "c\\d"` + "\r\n",
	"a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n", "a AUTHENTICATE PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\n", "a AUTHENTICATE LOGIN\r\n*\r\n",
	"a STARTTLS\r\n", "a ENABLE IMAP4rev2 CONDSTORE QRESYNC UTF8=ACCEPT\r\n", "a SELECT INBOX (CONDSTORE)\r\n",
	"a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541 (1:3 41:43)))\r\n", "a EXAMINE \"&AMQ-rger\"\r\n",
	"a CREATE Foo/Bar (USE (\\Sent))\r\n", "a DELETE Foo\r\n", "a RENAME Foo Bar\r\n", "a SUBSCRIBE ~bob\r\n", "a UNSUBSCRIBE x\r\n",
	"a LIST \"\" *\r\n", "a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (% x/*) RETURN (CHILDREN STATUS (MESSAGES SIZE))\r\n",
	"a LSUB \"\" %\r\n", "a STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE HIGHESTMODSEQ)\r\n",
	"a APPEND INBOX (\\Seen) \" 1-Jan-2024 10:00:00 +0100\" {5}\r\nhello\r\n", "a APPEND INBOX ~{3+}\r\na\x00b\r\n",
	"a APPEND INBOX UTF8 (~{3+}\r\nabc)\r\n", "a IDLE\r\nDONE\r\n", "a NAMESPACE\r\n", "a CHECK\r\n", "a CLOSE\r\n", "a UNSELECT\r\n",
	"a EXPUNGE\r\n", "a UID EXPUNGE 1:*\r\n", "a FETCH 1:* (FLAGS UID MODSEQ)\r\n", "a FETCH 1 ALL\r\n", "a FETCH 2:4 FULL\r\n",
	"a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n",
	"a FETCH 1 (BODY.PEEK[1.2.HEADER.FIELDS (From \"To\" {2}\r\nCc)]<0.100> BINARY[1]<5.5> BINARY.SIZE[2] RFC822.SIZE ENVELOPE BODYSTRUCTURE)\r\n",
	"a FETCH $ (BODY[] BODY[TEXT] BODY[1.MIME] RFC822 RFC822.HEADER RFC822.TEXT INTERNALDATE)\r\n",
	"a STORE 1:3 +FLAGS.SILENT (\\Seen $Junk)\r\n", "a UID STORE 1,3 (UNCHANGEDSINCE 7) -FLAGS \\Deleted\r\n", "a STORE * FLAGS ()\r\n",
	"a SEARCH CHARSET UTF-8 OR (FROM {3}\r\nbob SUBJECT x) NOT (SINCE 1-Jan-2024 LARGER 100) UID 1:5,7 $\r\n",
	"a UID SEARCH RETURN (MIN MAX COUNT ALL SAVE) MODSEQ \"/flags/\\\\draft\" all 5 KEYWORD x HEADER X-Y \"\"\r\n",
	"a SEARCH 1:* SENTON \"2-Mar-2024\" BODY x TEXT y BCC z CC w TO v UNKEYWORD k NEW OLD RECENT ANSWERED\r\n",
	"a SORT RETURN (MIN MAX) (REVERSE SUBJECT DATE) UTF-8 ALL\r\n",
	"a FETCH 1:* (EMAILID THREADID SAVEDATE PREVIEW (LAZY))\r\n", "a FETCH 1 PREVIEW (CHANGEDSINCE 3)\r\n",
	"a SEARCH EMAILID M12 THREADID T1 SAVEDBEFORE 1-Jan-2024 SAVEDON 2-Jan-2024 SAVEDSINCE 3-Jan-2024 SAVEDATESUPPORTED\r\n",
	"a STATUS INBOX (MAILBOXID)\r\n", "a LIST \"\" * RETURN (METADATA (/private/comment /shared/x) STATUS (MESSAGES))\r\n", "a FETCH 1 SAVEDATE\r\n", "a GETMETADATA (DEPTH 1 MAXSIZE 5) INBOX (/private/a /shared/b)\r\n",
	"a SETMETADATA \"\" (/shared/comment {3+}\r\nabc /private/x ~{2+}\r\n\x00\x01 /private/y NIL)\r\n", "a LIST \"\" * RETURN (STATUS (MAILBOXID))\r\n", "a UID THREAD REFERENCES US-ASCII 1:*\r\n",
	"a COPY 1:2 Trash\r\n", "a UID MOVE 1:* Archive\r\n", "a FOO {3+}\r\nabc\r\n", "a SEARCH ((((((((((((((((((ALL))))))))))))))))))\r\n",
	"a SEARCH RETURN (PARTIAL -1:-100 MIN SAVE) UNSEEN\r\n", "a UID SEARCH RETURN (PARTIAL 4294967295:1 COUNT) ALL\r\n",
	"a SEARCH RETURN (UPDATE CONTEXT COUNT) FLAGGED\r\nb STORE 1:* +FLAGS (\\Flagged)\r\nc EXPUNGE\r\nd CANCELUPDATE \"a\"\r\n",
	"a UID SORT RETURN (UPDATE PARTIAL 1:10) (SIZE) UTF-8 ALL\r\nb UID STORE 1:* -FLAGS (\\Seen)\r\nc IDLE\r\nDONE\r\n",
	"a CANCELUPDATE \"x\" \"y\"\r\n", "a UID FETCH 1:* (UID FLAGS) (PARTIAL -1:-3 CHANGEDSINCE 1)\r\n",
	"\x16\x03\x01\x00\r\n", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "a LOGIN {99999999999999999999}\r\n", "a FETCH 1:2:3 FLAGS\r\n",
}

// FuzzCommands runs arbitrary input through the real command loop and
// handlers in each state: no panic, no hang, bounded allocation.
func FuzzCommands(f *testing.F) {
	for _, s := range fuzzSeeds {
		for st := byte(0); st < 3; st++ {
			f.Add(st, []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, st byte, input []byte) {
		state := []connState{stateNotAuth, stateAuth, stateSelected}[st%3]
		done := make(chan struct{})
		go func() {
			defer close(done)
			runCommands(t, input, state, io.Discard)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			panic(fmt.Sprintf("hang on state %d input %q", state, input))
		}
	})
}

// TestSeedsRun checks that the fuzz seeds parse as intended.
func TestSeedsRun(t *testing.T) {
	var out strings.Builder
	runCommands(t, []byte("a FETCH 1 (BODY.PEEK[1.2.HEADER.FIELDS (From \"To\" {2}\r\nCc)]<0.100> UID)\r\nb SEARCH CHARSET UTF-8 OR (FROM {3}\r\nbob SUBJECT x) NOT (SINCE 1-Jan-2024 LARGER 100) UID 1:5,7 $\r\nc NOOP\r\n"), stateSelected, &out)
	want := "+ Ready for literal data\r\na OK FETCH completed\r\n+ Ready for literal data\r\n* SEARCH\r\nb OK SEARCH completed\r\nc OK NOOP completed\r\n"
	if out.String() != want {
		t.Fatalf("got %q\nwant %q", out.String(), want)
	}
}

func (fuzzStore) SaveDates(context.Context, int64, int64, mailstore.UIDSet) ([]mailstore.SaveDate, error) {
	return nil, nil
}
func (fuzzStore) GetMetadata(context.Context, int64, string, []string, int) ([]mailstore.MetadataEntry, error) {
	return nil, nil
}
func (fuzzStore) SetMetadata(context.Context, int64, string, []mailstore.MetadataEntry) error {
	return nil
}

// metaFuzzStore checks what the METADATA parsers hand the store.
type metaFuzzStore struct {
	fuzzStore
	t *testing.T
}

func (s metaFuzzStore) GetMetadata(_ context.Context, _ int64, _ string, names []string, depth int) ([]mailstore.MetadataEntry, error) {
	if len(names) == 0 || len(names) > maxMetadataArgs || depth < mailstore.MetadataDepthInfinity || depth > 1 {
		s.t.Fatalf("GetMetadata(%q, depth %d)", names, depth)
	}
	for i, n := range names {
		if m, ok := mailstore.NormalizeMetadataLookup(n); !ok || m != n {
			s.t.Fatalf("GetMetadata: name %q", n)
		}
		for _, o := range names[:i] {
			if o == n {
				s.t.Fatalf("GetMetadata: %q twice", n)
			}
		}
	}
	return []mailstore.MetadataEntry{{Name: names[0], Value: []byte("a\x00b\r\n")}}, nil
}

func (s metaFuzzStore) SetMetadata(_ context.Context, _ int64, _ string, es []mailstore.MetadataEntry) error {
	if len(es) == 0 || len(es) > mailstore.MaxMetadataObject {
		s.t.Fatalf("SetMetadata of %d entries", len(es))
	}
	seen := map[string]bool{}
	for _, e := range es {
		if m, ok := mailstore.NormalizeMetadataName(e.Name); !ok || m != e.Name || seen[e.Name] || len(e.Value) > mailstore.MaxMetadataValue {
			s.t.Fatalf("SetMetadata: entry %q (%d octets), seen %v", e.Name, len(e.Value), seen[e.Name])
		}
		seen[e.Name] = true
	}
	return nil
}

// FuzzMetadataArgs runs arbitrary GETMETADATA and SETMETADATA arguments
// through the parsers: no panic, and only valid requests reach the store
// (normalised unique names within the limits, bounded values).
func FuzzMetadataArgs(f *testing.F) {
	for _, s := range []string{
		`"" /shared/comment`, `(MAXSIZE 1024 DEPTH infinity) INBOX (/private/comment /shared/comment)`,
		`(DEPTH 1) "INBOX" (/private/filters/values)`, `INBOX /private`, `"" (/Shared/Vendor/x/y /shared/vendor/X/Y)`,
		`INBOX (/private/comment "x" /shared/comment NIL)`, "INBOX (/private/comment {3+}\r\na\r\nb)",
		"INBOX (/private/bin ~{3+}\r\na\x00b /private/bin NIL)", `"" (/shared/admin "x")`, `INBOX (/private/a* "x")`,
		`(DEPTH 2) INBOX /private/x`, `INBOX ()`, "INBOX (/private/x {99999}\r\n)",
	} {
		f.Add(false, []byte(s))
		f.Add(true, []byte(s))
	}
	f.Fuzz(func(t *testing.T, set bool, args []byte) {
		cmd := "a GETMETADATA "
		if set {
			cmd = "a SETMETADATA "
		}
		input := append([]byte(cmd), args...)
		input = append(input, "\r\nb NOOP\r\n"...)
		done := make(chan struct{})
		go func() {
			defer close(done)
			runCommandsOn(t, metaFuzzStore{t: t}, input, stateAuth, io.Discard)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			panic(fmt.Sprintf("hang on %q", input))
		}
	})
}
