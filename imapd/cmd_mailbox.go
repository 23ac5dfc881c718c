package imapd

import (
	"slices"
	"strconv"
	"strings"

	"github.com/postrider/postrider/mailstore"
)

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }
func utoa(n uint64) string { return strconv.FormatUint(n, 10) }

// creatableUses are the special-use attributes CREATE accepts (RFC 6154
// §3); \All and \Flagged denote virtual mailboxes, which Postrider does not
// have.
var creatableUses = map[string]string{
	`\archive`: mailstore.SpecialUseArchive,
	`\drafts`:  mailstore.SpecialUseDrafts,
	`\junk`:    mailstore.SpecialUseJunk,
	`\sent`:    mailstore.SpecialUseSent,
	`\trash`:   mailstore.SpecialUseTrash,
}

// CREATE (RFC 9051 §6.3.4) with the USE parameter (RFC 6154 §3).
func cmdCreate(c *conn, cx *cmdCtx) error {
	if err := c.p.sp(); err != nil {
		return err
	}
	name, err := c.mailboxArg(true)
	if err != nil {
		if pe, ok := err.(*protoError); !ok || pe.status == statusBAD {
			return err
		}
		// Keep parsing so that a syntax error still wins over a bad name.
	}
	var uses []string
	if c.p.accept(' ') {
		perr := c.p.list(func() error {
			if !c.p.acceptWord("USE") {
				return errBad("Unknown CREATE parameter")
			}
			if err := c.p.sp(); err != nil {
				return err
			}
			return c.p.list(func() error {
				if !c.p.accept('\\') {
					return errBad("Invalid special-use attribute")
				}
				a, err := c.p.atom()
				if len(uses) < 8 {
					uses = append(uses, `\`+strings.ToLower(a))
				}
				return err
			})
		})
		if perr != nil {
			return perr
		}
	}
	if err := c.p.end(); err != nil {
		return err
	}
	if err != nil {
		return err
	}
	use := ""
	switch len(uses) {
	case 0:
	case 1:
		var ok bool
		if use, ok = creatableUses[uses[0]]; !ok {
			return errNo("USEATTR", "Unsupported special-use attribute")
		}
	default:
		return errNo("USEATTR", "Only one special-use attribute per mailbox")
	}
	if name == "INBOX" {
		return errNo(codeAlreadyExists, "INBOX always exists")
	}
	mb, err := c.srv.store.CreateMailbox(c.ctx, c.acct.ID, name, use)
	if err == nil {
		cx.okCode = "MAILBOXID (" + mailboxID(mb.ID) + ")" // RFC 8474 §4.1
	}
	return err
}

// DELETE (RFC 9051 §6.3.5). Deleting the selected mailbox leaves the
// selected state, which the client learns from OK [CLOSED].
func cmdDelete(c *conn, cx *cmdCtx) error {
	name, err := c.soleMailboxArg(false)
	if err != nil {
		return err
	}
	if err := c.srv.store.DeleteMailbox(c.ctx, c.acct.ID, name); err != nil {
		return err
	}
	if c.sel != nil && c.sel.mbox.Name == name {
		c.unselect()
		c.untaggedOK("CLOSED", "Mailbox deleted")
	}
	return nil
}

// RENAME (RFC 9051 §6.3.6).
func cmdRename(c *conn, cx *cmdCtx) error {
	if err := c.p.sp(); err != nil {
		return err
	}
	oldRaw, err := c.p.astring()
	if err != nil {
		return err
	}
	if err := c.p.sp(); err != nil {
		return err
	}
	newRaw, err := c.p.astring()
	if err != nil {
		return err
	}
	if err := c.p.end(); err != nil {
		return err
	}
	oldName, err := c.decodeName(oldRaw, false)
	if err != nil {
		return err
	}
	newName, err := c.decodeName(newRaw, true)
	if err != nil {
		return err
	}
	if err := c.srv.store.RenameMailbox(c.ctx, c.acct.ID, oldName, newName); err != nil {
		return err
	}
	if s := c.sel; s != nil && oldName != "INBOX" {
		if s.mbox.Name == oldName {
			s.mbox.Name = newName
		} else if strings.HasPrefix(s.mbox.Name, oldName+"/") {
			s.mbox.Name = newName + s.mbox.Name[len(oldName):]
		}
	}
	return nil
}

// SUBSCRIBE and UNSUBSCRIBE (RFC 9051 §6.3.7, §6.3.8). The name need not
// exist.
func cmdSubscribe(c *conn, cx *cmdCtx) error {
	name, err := c.soleMailboxArg(true)
	if err != nil {
		return err
	}
	return c.srv.store.SetSubscribed(c.ctx, c.acct.ID, name, cx.name == "SUBSCRIBE")
}

// statusItemNames are the STATUS data items (RFC 9051 §6.3.11, RFC 7162
// §3.1.9 HIGHESTMODSEQ, RFC 8438 SIZE, RFC 7889 APPENDLIMIT; RECENT for
// IMAP4rev1, RFC 3501 §6.3.10).
var statusItemNames = map[string]bool{
	"MESSAGES": true, "UIDNEXT": true, "UIDVALIDITY": true, "UNSEEN": true,
	"DELETED": true, "SIZE": true, "HIGHESTMODSEQ": true, "RECENT": true,
	"APPENDLIMIT": true, "MAILBOXID": true, // RFC 8474 §4.3
	"DELETED-STORAGE": true, // RFC 9208 §4.1.4, with QUOTA=RES-STORAGE (§5.1)
}

// statusItems parses "(" status-att *(SP status-att) ")".
func (c *conn) statusItems() ([]string, error) {
	var items []string
	err := c.p.list(func() error {
		a, err := c.p.atom()
		if err != nil {
			return err
		}
		a = strings.ToUpper(a)
		if !statusItemNames[a] {
			return errBad("Unknown STATUS item")
		}
		if a == "HIGHESTMODSEQ" {
			c.enableCondstore()
		}
		if len(items) < 16 {
			items = append(items, a)
		}
		return nil
	})
	if err == nil && len(items) == 0 {
		err = errBad("Empty STATUS item list")
	}
	return items, err
}

// STATUS (RFC 9051 §6.3.11).
func cmdStatus(c *conn, cx *cmdCtx) error {
	if err := c.p.sp(); err != nil {
		return err
	}
	raw, err := c.p.astring()
	if err != nil {
		return err
	}
	if err := c.p.sp(); err != nil {
		return err
	}
	items, err := c.statusItems()
	if err != nil {
		return err
	}
	if err := c.p.end(); err != nil {
		return err
	}
	name, err := c.decodeName(raw, false)
	if err != nil {
		return err
	}
	st, err := c.srv.store.MailboxStatusByName(c.ctx, c.acct.ID, name)
	if err != nil {
		return err
	}
	return c.writeStatus(st, items)
}

// writeStatus sends "* STATUS name (item value ...)". DELETED-STORAGE
// alone asks the store more than st.
func (c *conn) writeStatus(st mailstore.MailboxStatus, items []string) error {
	var delSize int64
	if slices.Contains(items, "DELETED-STORAGE") {
		var err error
		if delSize, err = c.srv.store.DeletedSize(c.ctx, c.acct.ID, st.ID); err != nil {
			return err
		}
	}
	c.w.str("* STATUS ")
	c.writeName(st.Name)
	c.w.str(" (")
	for i, it := range items {
		if i > 0 {
			c.w.sp()
		}
		c.w.str(it)
		c.w.sp()
		switch it {
		case "MESSAGES":
			c.w.num32(st.Messages)
		case "UIDNEXT":
			c.w.num32(st.UIDNext)
		case "UIDVALIDITY":
			c.w.num32(st.UIDValidity)
		case "UNSEEN":
			c.w.num32(st.Unseen)
		case "DELETED":
			c.w.num32(st.Deleted)
		case "SIZE":
			c.w.num(uint64(max(st.Size, 0)))
		case "HIGHESTMODSEQ":
			c.w.num(st.HighestModSeq)
		case "RECENT":
			c.w.num32(st.Recent) // messages no session has claimed (RFC 3501 §6.3.10)
		case "APPENDLIMIT":
			c.w.num(uint64(c.srv.cfg.MaxMessageSize))
		case "MAILBOXID":
			c.w.str("(" + mailboxID(st.ID) + ")")
		case "DELETED-STORAGE":
			// In KiB like the STORAGE resource it would free (RFC 9208
			// §5.1; the RFC's example has DELETED 4 DELETED-STORAGE 8).
			c.w.num(uint64(kib(delSize)))
		}
	}
	c.w.str(")\r\n")
	return nil
}
