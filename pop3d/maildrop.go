package pop3d

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/postrider/postrider/mailstore"
)

// HiddenKeyword marks a message that a POP3 client deleted while
// Config.KeepDeleted was set: it stays in INBOX for IMAP but is no longer
// part of any POP3 maildrop. Messages with it are always left out of the
// maildrop, whatever the current KeepDeleted setting, so switching the
// option off does not bring old mail back to POP3 clients.
const HiddenKeyword = "$POP3Deleted"

// message is one message of the maildrop snapshot.
type message struct {
	uid       uint32
	stored    int64 // size in the store
	size      int64 // size on the wire (valid once the maildrop is sized)
	seen      bool  // had \Seen at login (or was marked since)
	deleted   bool  // marked by DELE (RFC 1939 §6)
	gone      bool  // the store no longer has it (expunged by IMAP)
	retrieved bool  // sent by RETR; \Seen still to be set
}

// maildrop is the session's view of INBOX, fixed at login: message numbers
// (1-based indexes into msgs) never change during the session (RFC 1939 §6).
type maildrop struct {
	box   mailstore.Mailbox
	msgs  []message
	all   []uint32 // every UID of INBOX at login, hidden ones too (size cache)
	sized bool
}

func isHidden(f mailstore.Flags) bool {
	for _, k := range f.Keywords {
		if strings.EqualFold(k, HiddenKeyword) {
			return true
		}
	}
	return false
}

// loadMaildrop snapshots INBOX (RFC 1939 §4: the maildrop is fixed when
// the session enters the TRANSACTION state).
func loadMaildrop(ctx context.Context, st mailstore.Store, accountID int64) (*maildrop, error) {
	box, err := st.GetMailbox(ctx, accountID, "INBOX")
	if err != nil {
		return nil, fmt.Errorf("get INBOX: %w", err)
	}
	metas, err := st.ListMessages(ctx, accountID, box.ID, nil)
	if err != nil {
		return nil, fmt.Errorf("list INBOX: %w", err)
	}
	md := &maildrop{box: box, all: make([]uint32, len(metas))}
	md.msgs = make([]message, 0, len(metas))
	for i, m := range metas {
		md.all[i] = m.UID
		if isHidden(m.Flags) {
			continue
		}
		md.msgs = append(md.msgs, message{
			uid:    m.UID,
			stored: m.Size,
			size:   m.Size,
			seen:   m.Flags.System&mailstore.FlagSeen != 0,
		})
	}
	return md, nil
}

// uidl returns the unique-id of a message (RFC 1939 §7: 1 to 70 characters
// in 0x21-0x7E). It is "<UIDVALIDITY>.<UID>" of INBOX: the store allocates
// UIDs once and never reuses them while UIDVALIDITY stays, so the value is
// the same on every node and in every session, and never names another
// message. (The IMAP UID of the message is the part after the dot.)
func (md *maildrop) uidl(m *message) string {
	return strconv.FormatUint(uint64(md.box.UIDValidity), 10) + "." + strconv.FormatUint(uint64(m.uid), 10)
}

// get returns message number n (1-based) if it exists and is not marked
// deleted (RFC 1939 §5: such messages may not be referred to).
func (md *maildrop) get(n int) (*message, error) {
	if n < 1 || n > len(md.msgs) {
		return nil, errReply("", "No such message")
	}
	m := &md.msgs[n-1]
	if m.deleted {
		return nil, errReply("", "Message "+strconv.Itoa(n)+" is already deleted")
	}
	return m, nil
}

// stat returns the number and total wire size of the messages not marked
// deleted (RFC 1939 §5 STAT).
func (md *maildrop) stat() (n int, size int64) {
	for i := range md.msgs {
		if !md.msgs[i].deleted {
			n++
			size += md.msgs[i].size
		}
	}
	return n, size
}

// sizeScanWorkers bounds the messages measured at once by one session:
// a few streams in parallel hide the store's round trips.
const sizeScanWorkers = 4

// ensureSized computes the wire sizes (see sizecache.go) once per session.
func (s *session) ensureSized(ctx context.Context) error {
	md := s.md
	if md.sized {
		return nil
	}
	key := boxKey{mailbox: md.box.ID, uidValidity: md.box.UIDValidity}
	need := s.srv.sizes.known(key, md.msgs)
	var (
		mu       sync.Mutex
		scanned  = make(map[uint32]int64, len(need))
		firstErr error
		wg       sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan *message)
	for range min(sizeScanWorkers, len(need)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 32<<10)
			for m := range work {
				n, err := s.measure(ctx, m.uid, buf)
				mu.Lock()
				switch {
				case errors.Is(err, mailstore.ErrNoSuchMessage):
					m.gone = true // RETR will say so; LIST shows the stored size
				case err != nil:
					if firstErr == nil {
						firstErr = err
						cancel()
					}
				default:
					m.size = n
					scanned[m.uid] = n - m.stored
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for _, i := range need {
		select {
		case work <- &md.msgs[i]:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	mSizeScans.Add(float64(len(scanned)))
	s.srv.sizes.update(key, md.all, scanned)
	md.all = nil
	md.sized = true
	return nil
}

// measure streams one message through msgWriter in counting mode.
func (s *session) measure(ctx context.Context, uid uint32, buf []byte) (int64, error) {
	rc, err := s.srv.store.OpenMessage(ctx, s.acc.ID, s.md.box.ID, uid, 0, -1)
	if err != nil {
		return 0, fmt.Errorf("open message %d for sizing: %w", uid, err)
	}
	defer rc.Close()
	n, err := wireSize(rc, buf)
	if err != nil {
		return 0, fmt.Errorf("size message %d: %w", uid, err)
	}
	return n, nil
}
