package imapd

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
)

// go-imap/v2's imapclient as a real client: every answer must parse.
func TestImapclient(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "INBOX", multipartMsg)
	var mu sync.Mutex
	var expunged []uint32
	var exists []uint32
	c, err := imapclient.DialInsecure(e.addr, &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Expunge: func(seq uint32) { mu.Lock(); expunged = append(expunged, seq); mu.Unlock() },
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					mu.Lock()
					exists = append(exists, *d.NumMessages)
					mu.Unlock()
				}
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Authenticate(sasl.NewPlainClient("", "alice@example.org", "pw-alice")); err != nil {
		t.Fatal(err)
	}
	caps := c.Caps()
	for _, cp := range []imap.Cap{imap.CapIMAP4rev2, imap.CapIdle, imap.CapMove, imap.CapUIDPlus, imap.CapESearch, imap.CapCondStore, imap.CapBinary} {
		if !caps.Has(cp) {
			t.Errorf("missing capability %s", cp)
		}
	}
	if _, err := c.Enable(imap.CapIMAP4rev2).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Create("Work/Reports", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	boxes, err := c.List("", "*", &imap.ListOptions{ReturnStatus: &imap.StatusOptions{NumMessages: true}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, b := range boxes {
		names[b.Mailbox] = true
	}
	if !names["INBOX"] || !names["Work/Reports"] || !names["Sent"] {
		t.Fatalf("LIST: %v", names)
	}
	st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true, UIDNext: true, Size: true}).Wait()
	if err != nil || *st.NumMessages != 1 || st.UIDNext != 2 {
		t.Fatalf("STATUS %+v %v", st, err)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 1 {
		t.Fatalf("SELECT %+v %v", sel, err)
	}
	msg := []byte(testMessage("via imapclient", "hello\r\n"))
	ap := c.Append("INBOX", int64(len(msg)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagFlagged}})
	ap.Write(msg)
	ap.Close()
	apd, err := ap.Wait()
	if err != nil || apd.UID != 2 {
		t.Fatalf("APPEND %+v %v", apd, err)
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}

	fetch := &imap.FetchOptions{
		UID: true, Flags: true, Envelope: true, RFC822Size: true, InternalDate: true,
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		BodySection: []*imap.FetchItemBodySection{
			{Specifier: imap.PartSpecifierHeader, Peek: true},
			{Part: []int{1}, Peek: true},
			{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}, Peek: true},
			{Peek: true, Partial: &imap.SectionPartial{Offset: 0, Size: 10}},
		},
		BinarySection:     []*imap.FetchItemBinarySection{{Part: []int{2}, Peek: true}},
		BinarySectionSize: []*imap.FetchItemBinarySectionSize{{Part: []int{1}}},
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1), fetch).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("FETCH %v %v", msgs, err)
	}
	m := msgs[0]
	if m.Envelope.Subject != "=?UTF-8?Q?Gr=C3=BC=C3=9Fe?= report" && m.Envelope.Subject != "Grüße report" {
		t.Errorf("subject %q", m.Envelope.Subject)
	}
	mp, ok := m.BodyStructure.(*imap.BodyStructureMultiPart)
	if !ok || len(mp.Children) != 4 || mp.Subtype != "mixed" {
		t.Fatalf("bodystructure %#v", m.BodyStructure)
	}
	if got := m.FindBodySection(&imap.FetchItemBodySection{Part: []int{1}}); string(got) != "Hello =C3=A4 world" {
		t.Errorf("BODY[1] %q", got)
	}
	if got := m.FindBodySection(&imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"SUBJECT"}}); !bytes.HasPrefix(got, []byte("Subject: ")) {
		t.Errorf("HEADER.FIELDS %q", got)
	}
	if got := m.FindBinarySection(&imap.FetchItemBinarySection{Part: []int{2}}); !bytes.Equal(got, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Errorf("BINARY[2] %q", got)
	}
	if len(m.BinarySectionSize) != 1 || m.BinarySectionSize[0].Size != 14 {
		t.Errorf("BINARY.SIZE %+v", m.BinarySectionSize)
	}

	sd, err := c.UIDSearch(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}}, &imap.SearchOptions{ReturnMin: true, ReturnCount: true, ReturnAll: true}).Wait()
	if err != nil || sd.Count != 1 || sd.Min != 2 {
		t.Fatalf("SEARCH %+v %v", sd, err)
	}
	if err := c.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	cp, err := c.Copy(imap.UIDSetNum(2), "Work/Reports").Wait()
	if err != nil || cp.DestUIDs.String() != "1" {
		t.Fatalf("COPY %+v %v", cp, err)
	}
	if _, err := c.Move(imap.UIDSetNum(2), "Archive").Wait(); err != nil {
		t.Fatal(err)
	}
	if seqs, err := c.Expunge().Collect(); err != nil || len(seqs) != 1 || seqs[0] != 1 {
		t.Fatalf("EXPUNGE %v %v", seqs, err)
	}
	// IDLE sees a delivery.
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	before := len(exists)
	mu.Unlock()
	e.deliver("alice", "INBOX", testMessage("during idle", "x\r\n"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(exists)
		mu.Unlock()
		if n > before || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(exists) == 0 || exists[len(exists)-1] != 1 {
		t.Errorf("EXISTS during IDLE: %v", exists)
	}
	if len(expunged) != 1 || expunged[0] != 2 { // the MOVE's
		t.Errorf("expunges %v", expunged)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
}
