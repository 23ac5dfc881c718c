package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/postrider/postrider/mailstore"
)

func (fx *fixture) setMeta(acct int64, mailbox string, kv ...string) {
	fx.t.Helper()
	var es []mailstore.MetadataEntry
	for i := 0; i < len(kv); i += 2 {
		e := mailstore.MetadataEntry{Name: kv[i]}
		if kv[i+1] != "\x00nil" {
			e.Value = []byte(kv[i+1])
		}
		es = append(es, e)
	}
	must(fx.t, fx.st.SetMetadata(fx.ctx, acct, mailbox, es), "SetMetadata")
}

// getMeta renders GetMetadata's result as "name=value name=value".
func (fx *fixture) getMeta(acct int64, mailbox string, depth int, names ...string) string {
	fx.t.Helper()
	es, err := fx.st.GetMetadata(fx.ctx, acct, mailbox, names, depth)
	must(fx.t, err, "GetMetadata")
	var out []string
	for _, e := range es {
		out = append(out, e.Name+"="+string(e.Value))
	}
	return strings.Join(out, " ")
}

const metaNil = "\x00nil"

// testMetadataSetGet: entries of the server and of mailboxes, replaced,
// removed with a nil value, read by name and with depth 0, 1 and
// infinity; binary and empty values kept exactly.
func testMetadataSetGet(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	a := fx.account("alice@example.org").ID
	fx.setMeta(a, "", "/shared/comment", "server note", "/private/vendor/x/a", "1")
	fx.setMeta(a, "INBOX", "/private/comment", "mine", "/shared/comment", "ours",
		"/private/vendor/x/a", "A", "/private/vendor/x/a/b", "AB", "/private/vendor/x/a/b/c", "ABC", "/private/vendor/x/ab", "no")
	if got := fx.getMeta(a, "", 0, "/shared/comment"); got != "/shared/comment=server note" {
		t.Errorf("server entry: %q", got)
	}
	if got := fx.getMeta(a, "inbox", 0, "/private/comment"); got != "/private/comment=mine" {
		t.Errorf("INBOX by another case: %q", got)
	}
	if got := fx.getMeta(a, "INBOX", 0, "/shared/comment", "/private/comment", "/private/missing"); got != "/private/comment=mine /shared/comment=ours" {
		t.Errorf("two entries and a missing one: %q", got)
	}
	if got := fx.getMeta(a, "INBOX", 0, "/private/vendor/x/a"); got != "/private/vendor/x/a=A" {
		t.Errorf("depth 0: %q", got)
	}
	if got := fx.getMeta(a, "INBOX", 1, "/private/vendor/x/a"); got != "/private/vendor/x/a=A /private/vendor/x/a/b=AB" {
		t.Errorf("depth 1: %q", got)
	}
	if got := fx.getMeta(a, "INBOX", mailstore.MetadataDepthInfinity, "/private/vendor/x/a"); got != "/private/vendor/x/a=A /private/vendor/x/a/b=AB /private/vendor/x/a/b/c=ABC" {
		t.Errorf("depth infinity: %q", got)
	}
	// A parent need not exist for its children to be found.
	if got := fx.getMeta(a, "INBOX", 1, "/private/vendor/x"); got != "/private/vendor/x/a=A /private/vendor/x/ab=no" {
		t.Errorf("depth 1 below a name without a value: %q", got)
	}
	fx.setMeta(a, "INBOX", "/private/comment", "changed", "/shared/comment", metaNil)
	if got := fx.getMeta(a, "INBOX", 0, "/shared/comment", "/private/comment"); got != "/private/comment=changed" {
		t.Errorf("after replace and remove: %q", got)
	}
	bin := []byte{0, 1, 2, '\r', '\n', 0xff}
	must(t, fx.st.SetMetadata(fx.ctx, a, "INBOX", []mailstore.MetadataEntry{{Name: "/private/bin", Value: bin}, {Name: "/private/empty", Value: []byte{}}}), "SetMetadata binary")
	es, err := fx.st.GetMetadata(fx.ctx, a, "INBOX", []string{"/private/bin", "/private/empty"}, 0)
	must(t, err, "GetMetadata binary")
	if len(es) != 2 || !bytes.Equal(es[0].Value, bin) || es[1].Value == nil || len(es[1].Value) != 0 {
		t.Errorf("binary and empty values: %+v", es)
	}
	// Removing what does not exist is no error.
	fx.setMeta(a, "", "/private/never", metaNil)
	if _, err := fx.st.GetMetadata(fx.ctx, a, "Nope", []string{"/private/comment"}, 0); !errors.Is(err, mailstore.ErrNoSuchMailbox) {
		t.Errorf("GetMetadata of a missing mailbox: %v", err)
	}
	err = fx.st.SetMetadata(fx.ctx, a, "Nope", []mailstore.MetadataEntry{{Name: "/private/comment", Value: []byte("x")}})
	wantErr(t, err, "SetMetadata of a missing mailbox", mailstore.ErrNoSuchMailbox)
	for _, bad := range []string{"/private", "/other/x", "/private/", "/private//x", "/private/x/", "/Private/x", "/private/a*", "/private/vendor/x", "/private/é"} {
		err := fx.st.SetMetadata(fx.ctx, a, "", []mailstore.MetadataEntry{{Name: bad, Value: []byte("x")}})
		wantErr(t, err, "SetMetadata "+bad, mailstore.ErrInvalidArgument)
	}
	err = fx.st.SetMetadata(fx.ctx, a, "", []mailstore.MetadataEntry{{Name: "/private/d", Value: []byte("1")}, {Name: "/private/d"}})
	wantErr(t, err, "SetMetadata of one name twice", mailstore.ErrInvalidArgument)
	if got := fx.getMeta(a, "", 0, "/private/d"); got != "" {
		t.Errorf("a refused SetMetadata changed %q", got)
	}
}

// testMetadataLimits: value size, entries per object and per account;
// a refused SetMetadata changes nothing (RFC 5464 §4.3).
func testMetadataLimits(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	a := fx.account("alice@example.org").ID
	big := make([]byte, mailstore.MaxMetadataValue)
	must(t, fx.st.SetMetadata(fx.ctx, a, "", []mailstore.MetadataEntry{{Name: "/private/big", Value: big}}), "largest value")
	err := fx.st.SetMetadata(fx.ctx, a, "", []mailstore.MetadataEntry{{Name: "/private/big2", Value: append(big, 0)}})
	wantErr(t, err, "value one octet too large", mailstore.ErrInvalidArgument)

	var es []mailstore.MetadataEntry
	for i := 1; i < mailstore.MaxMetadataObject; i++ { // with /private/big: the limit
		es = append(es, mailstore.MetadataEntry{Name: fmt.Sprintf("/private/e%d", i), Value: []byte("v")})
	}
	must(t, fx.st.SetMetadata(fx.ctx, a, "", es), "entries up to the limit")
	err = fx.st.SetMetadata(fx.ctx, a, "", []mailstore.MetadataEntry{{Name: "/private/e1", Value: []byte("new")}, {Name: "/private/one-more", Value: []byte("v")}})
	wantErr(t, err, "one entry over the limit", mailstore.ErrMetadataTooMany)
	if got := fx.getMeta(a, "", 0, "/private/e1", "/private/one-more"); got != "/private/e1=v" {
		t.Errorf("a refused SetMetadata changed entries: %q", got)
	}
	// Replacing and removing stay possible at the limit.
	fx.setMeta(a, "", "/private/e1", "new", "/private/e2", metaNil)
	fx.setMeta(a, "", "/private/one-more", "v")

	// The account's limit, over several mailboxes.
	n := mailstore.MaxMetadataObject
	for i := 0; n+mailstore.MaxMetadataObject <= mailstore.MaxMetadataAccount; i++ {
		box := fmt.Sprintf("Box%d", i)
		fx.createMailbox(a, box, "")
		es = es[:0]
		for j := 0; j < mailstore.MaxMetadataObject; j++ {
			es = append(es, mailstore.MetadataEntry{Name: fmt.Sprintf("/shared/e%d", j), Value: []byte("v")})
		}
		must(t, fx.st.SetMetadata(fx.ctx, a, box, es), "SetMetadata "+box)
		n += mailstore.MaxMetadataObject
	}
	fx.createMailbox(a, "Last", "")
	err = fx.st.SetMetadata(fx.ctx, a, "Last", []mailstore.MetadataEntry{{Name: "/private/x", Value: []byte("v")}})
	wantErr(t, err, "an entry over the account's limit", mailstore.ErrMetadataTooMany)
	// Another account is not affected.
	b := fx.account("bob@example.org").ID
	fx.setMeta(b, "", "/private/x", "v")
}

// testMetadataMailboxes: entries follow a renamed mailbox, are copied
// when INBOX is renamed (and kept on INBOX), and go with a deleted
// mailbox, so a new one of the same name starts without (RFC 5464 §4.1).
func testMetadataMailboxes(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	a := fx.account("alice@example.org").ID
	fx.createMailbox(a, "Work", "")
	fx.setMeta(a, "Work", "/private/comment", "work")
	fx.setMeta(a, "INBOX", "/shared/comment", "inbox")
	must(t, fx.st.RenameMailbox(fx.ctx, a, "Work", "Job"), "RenameMailbox")
	if got := fx.getMeta(a, "Job", 0, "/private/comment"); got != "/private/comment=work" {
		t.Errorf("renamed mailbox: %q", got)
	}
	fx.createMailbox(a, "Work", "")
	if got := fx.getMeta(a, "Work", 0, "/private/comment"); got != "" {
		t.Errorf("new mailbox with the old name: %q", got)
	}
	must(t, fx.st.RenameMailbox(fx.ctx, a, "INBOX", "Old"), "RenameMailbox INBOX")
	if got := fx.getMeta(a, "INBOX", 0, "/shared/comment"); got != "/shared/comment=inbox" {
		t.Errorf("INBOX after its rename: %q", got)
	}
	if got := fx.getMeta(a, "Old", 0, "/shared/comment"); got != "/shared/comment=inbox" {
		t.Errorf("renamed INBOX's copy: %q", got)
	}
	must(t, fx.st.DeleteMailbox(fx.ctx, a, "Job"), "DeleteMailbox")
	fx.createMailbox(a, "Job", "")
	if got := fx.getMeta(a, "Job", 0, "/private/comment"); got != "" {
		t.Errorf("recreated mailbox inherited %q", got)
	}
	// Server entries are not mailbox entries.
	if got := fx.getMeta(a, "", 0, "/shared/comment"); got != "" {
		t.Errorf("server entry from a mailbox's: %q", got)
	}
}

// testMetadataIsolation: an account never reads, changes or counts
// another's entries, server entries (/shared ones too) included.
func testMetadataIsolation(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	a := fx.account("alice@example.org").ID
	b := fx.account("bob@example.org").ID
	fx.createMailbox(a, "Secret", "")
	fx.setMeta(a, "", "/shared/comment", "alice server", "/private/comment", "alice private")
	fx.setMeta(a, "INBOX", "/shared/comment", "alice inbox", "/private/comment", "alice inbox private")
	if got := fx.getMeta(b, "", mailstore.MetadataDepthInfinity, "/shared", "/private"); got != "" {
		t.Errorf("bob sees alice's server entries: %q", got)
	}
	if got := fx.getMeta(b, "INBOX", mailstore.MetadataDepthInfinity, "/shared", "/private"); got != "" {
		t.Errorf("bob sees alice's INBOX entries: %q", got)
	}
	if _, err := fx.st.GetMetadata(fx.ctx, b, "Secret", []string{"/shared/comment"}, 0); !errors.Is(err, mailstore.ErrNoSuchMailbox) {
		t.Errorf("bob reads alice's mailbox: %v", err)
	}
	err := fx.st.SetMetadata(fx.ctx, b, "Secret", []mailstore.MetadataEntry{{Name: "/shared/comment", Value: []byte("x")}})
	wantErr(t, err, "bob writes alice's mailbox", mailstore.ErrNoSuchMailbox)
	fx.setMeta(b, "", "/shared/comment", "bob server", "/private/comment", metaNil)
	fx.setMeta(b, "INBOX", "/private/comment", metaNil)
	if got := fx.getMeta(a, "", 0, "/shared/comment", "/private/comment"); got != "/private/comment=alice private /shared/comment=alice server" {
		t.Errorf("alice's server entries after bob's writes: %q", got)
	}
	if got := fx.getMeta(a, "INBOX", 0, "/private/comment"); got != "/private/comment=alice inbox private" {
		t.Errorf("alice's INBOX entries after bob's writes: %q", got)
	}
}

// testMetadataCrossHandle: an entry set through one handle is read
// through another at once (nothing is cached).
func testMetadataCrossHandle(t *testing.T, f Factory) {
	x, y := pair(t, f)
	a := x.account("alice@example.org").ID
	x.setMeta(a, "INBOX", "/private/comment", "from x")
	if got := y.getMeta(a, "INBOX", 0, "/private/comment"); got != "/private/comment=from x" {
		t.Errorf("other handle: %q", got)
	}
}
