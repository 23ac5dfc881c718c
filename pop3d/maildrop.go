package pop3d

import (
	"context"
	"fmt"
	"strconv"
	"strings"

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
	size      int64 // size on the wire: MessageMeta.CRLFSize (see doc.go, Sizes)
	raw       int64 // size as stored: MessageMeta.Size
	seen      bool  // had \Seen at login (or was marked since)
	deleted   bool  // marked by DELE (RFC 1939 §6)
	gone      bool  // the store no longer has it (expunged by IMAP)
	retrieved bool  // sent by RETR; \Seen still to be set
}

// maildrop is the session's view of INBOX, fixed at login: message numbers
// (1-based indexes into msgs) never change during the session (RFC 1939 §6).
type maildrop struct {
	box  mailstore.Mailbox
	msgs []message
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
func loadMaildrop(ctx context.Context, st Store, accountID int64) (*maildrop, error) {
	box, err := st.GetMailbox(ctx, accountID, "INBOX")
	if err != nil {
		return nil, fmt.Errorf("get INBOX: %w", err)
	}
	metas, err := st.ListMessages(ctx, accountID, box.ID, nil)
	if err != nil {
		return nil, fmt.Errorf("list INBOX: %w", err)
	}
	md := &maildrop{box: box, msgs: make([]message, 0, len(metas))}
	for _, m := range metas {
		if isHidden(m.Flags) {
			continue
		}
		md.msgs = append(md.msgs, message{
			uid:  m.UID,
			size: m.CRLFSize,
			raw:  m.Size,
			seen: m.Flags.System&mailstore.FlagSeen != 0,
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
