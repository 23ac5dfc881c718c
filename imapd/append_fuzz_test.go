package imapd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/mailstore/msgparse"
)

// fuzzAppendStore lets APPEND through to the parsing of every message and
// CATENATE part: INBOX exists (UIDVALIDITY 7) with one multipart message,
// UID 1, and MultiAppend reads every body to its end as the real store
// does.
type fuzzAppendStore struct{ fuzzStore }

const fuzzAppendMsg = "From: a@example.org\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
	"--b\r\nContent-Type: text/plain\r\n\r\none\r\n--b\r\n\r\ntwo\r\n--b--\r\n"

func (fuzzAppendStore) GetMailbox(_ context.Context, _ int64, name string) (mailstore.Mailbox, error) {
	if name != "INBOX" {
		return mailstore.Mailbox{}, errFuzz
	}
	return mailstore.Mailbox{ID: 1, Name: "INBOX", UIDValidity: 7, UIDNext: 41}, nil
}

func (fuzzAppendStore) FetchDetails(_ context.Context, _, _ int64, uids mailstore.UIDSet) ([]mailstore.MessageDetail, error) {
	if !uids.Contains(1) {
		return nil, nil
	}
	p := msgparse.NewParser()
	p.Write([]byte(fuzzAppendMsg))
	m, _ := p.Finish()
	return []mailstore.MessageDetail{{MessageMeta: mailstore.MessageMeta{UID: 1, Size: int64(len(fuzzAppendMsg))}, Parsed: m}}, nil
}

func (fuzzAppendStore) OpenMessage(_ context.Context, _, _ int64, uid uint32, off, n int64) (io.ReadCloser, error) {
	if uid != 1 || off < 0 || off > int64(len(fuzzAppendMsg)) {
		return nil, mailstore.ErrNoSuchMessage
	}
	d := fuzzAppendMsg[off:]
	if n >= 0 && n < int64(len(d)) {
		d = d[:n]
	}
	return io.NopCloser(strings.NewReader(d)), nil
}

func (fuzzAppendStore) MultiAppend(_ context.Context, _, _ int64, next func() (mailstore.AppendMessage, bool, error)) ([]mailstore.AppendResult, error) {
	var out []mailstore.AppendResult
	for {
		m, ok, err := next()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		if len(out) >= mailstore.MaxMultiAppend {
			return nil, mailstore.ErrInvalidArgument
		}
		n, err := io.Copy(io.Discard, m.Body)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", mailstore.ErrTruncated, err)
		}
		out = append(out, mailstore.AppendResult{UIDValidity: 7, UID: uint32(41 + len(out)), Size: n, ModSeq: uint64(2 + len(out))})
	}
	if len(out) == 0 {
		return nil, mailstore.ErrInvalidArgument
	}
	return out, nil
}

var appendFuzzSeeds = []string{
	"a APPEND INBOX {5+}\r\nhello {3+}\r\nabc\r\n",
	"a APPEND INBOX (\\Seen) \"05-Jan-2024 10:00:00 +0100\" {5}\r\nhello (\\Draft) {3}\r\nabc\r\n",
	"a APPEND INBOX CATENATE (TEXT {3+}\r\nabc URL \"/INBOX;UIDVALIDITY=7/;UID=1/;SECTION=1.MIME\" URL \"/INBOX/;UID=1/;PARTIAL=2.5\")\r\n",
	"a APPEND INBOX CATENATE (URL \"/INBOX/;UID=1\") {2+}\r\nhi CATENATE (URL \"/INBOX/;UID=1/;SECTION=HEADER.FIELDS%20(Subject)\")\r\n",
	"a APPEND INBOX CATENATE (URL \"imap://x@fuzz/INBOX/;UID=1\" TEXT ~{2+}\r\nhi)\r\n",
	"a APPEND INBOX CATENATE (URL \"/INBOX/;UID=1/;SECTION=9\")\r\nb NOOP\r\n",
	"a APPEND Nope CATENATE (TEXT {3+}\r\nabc)\r\n",
	"a APPEND INBOX {5+}\r\nhello {3+}\r\nab",
	"a ENABLE UTF8=ACCEPT\r\nb APPEND INBOX CATENATE (UTF8 (~{2+}\r\nhi) TEXT {1+}\r\nx)\r\n",
}

// FuzzAppend runs APPEND commands (MULTIAPPEND, CATENATE, their literals
// and URLs) through the command loop against fuzzAppendStore: no input
// makes it panic or hang.
func FuzzAppend(f *testing.F) {
	for _, s := range appendFuzzSeeds {
		f.Add(false, []byte(s))
		f.Add(true, []byte(s))
	}
	f.Fuzz(func(t *testing.T, selected bool, input []byte) {
		state := stateAuth
		if selected {
			state = stateSelected
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			runCommandsOn(t, fuzzAppendStore{}, input, state, io.Discard)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			panic(fmt.Sprintf("hang on input %q", input))
		}
	})
}

// TestAppendSeedsRun checks that the APPEND fuzz seeds reach what they
// are meant to.
func TestAppendSeedsRun(t *testing.T) {
	want := []string{
		"a OK [APPENDUID 7 41:42] APPEND completed\r\n",
		"+ Ready for literal data\r\n+ Ready for literal data\r\na OK [APPENDUID 7 41:42] APPEND completed\r\n",
		"a OK [APPENDUID 7 41] APPEND completed\r\n",
		"a OK [APPENDUID 7 41:43] APPEND completed\r\n",
		"a NO [BADURL imap://x@fuzz/INBOX/;UID=1] URL of another user or server\r\n",
		"a NO [BADURL /INBOX/;UID=1/;SECTION=9] No such section\r\nb OK NOOP completed\r\n",
		"a NO [TRYCREATE] No such mailbox\r\n",
		"",
		"* ENABLED UTF8=ACCEPT\r\na OK ENABLE completed\r\nb OK [APPENDUID 7 41] APPEND completed\r\n",
	}
	for i, s := range appendFuzzSeeds {
		var out bytes.Buffer
		runCommandsOn(t, fuzzAppendStore{}, []byte(s), stateAuth, &out)
		if out.String() != want[i] {
			t.Errorf("seed %d %q:\n got %q\nwant %q", i, s, out.String(), want[i])
		}
	}
}
