package imapd

import (
	"strings"

	"github.com/postrider/postrider/mailstore"
)

// QUOTA (RFC 9208) with the STORAGE and MESSAGE resources (§5.1, §5.2).
//
// An account has one quota root, named "" as in the RFC's examples: every
// mailbox of the account is in it, and both resources count over all of
// them (mailstore.Quota, kept exact by the store). The root exists when the
// administrator set a limit (`postrider user quota`); a resource without a
// limit is left out of the QUOTA response (it has no limit to report), and
// an account without any limit has no quota root at all, so GETQUOTAROOT
// lists none and GETQUOTA "" answers NO (§4.1.1, §4.1.2).
//
// SETQUOTA is refused (§4.1.3: "NO - ... permission denied"): users may
// not set their own limits, and QUOTASET is not advertised (§3.2).
// STATUS DELETED and DELETED-STORAGE (§4.2.3) are not offered.

// quotaRootName is the name of an account's one quota root.
const quotaRootName = ""

// maxSetQuotaResources bounds the resource list of SETQUOTA (RFC 9208
// defines four resource names; a longer list is not a real client's).
const maxSetQuotaResources = 16

// codeNoPerm: the operation is not permitted (RFC 5530 §3 NOPERM).
const codeNoPerm = "NOPERM"

// hasQuotaRoot reports whether the account has a quota root: a limit on
// either resource.
func hasQuotaRoot(q mailstore.Quota) bool { return q.StorageLimit > 0 || q.MessagesLimit > 0 }

// kib rounds octets up to KiB, the unit of STORAGE (RFC 9208 §5.1). Up,
// for usage and limit alike: a limit under 1 KiB must not read as 0 (no
// room at all), and a usage of a few octets not as empty.
func kib(n int64) int64 { return (n + 1023) / 1024 }

// GETQUOTA (RFC 9208 §4.1.1).
func cmdGetQuota(c *conn, cx *cmdCtx) error {
	if err := c.p.sp(); err != nil {
		return err
	}
	root, err := c.p.astring()
	if err != nil {
		return err
	}
	if err := c.p.end(); err != nil {
		return err
	}
	q, err := c.srv.store.Quota(c.ctx, c.acct.ID)
	if err != nil {
		return err
	}
	if root != quotaRootName || !hasQuotaRoot(q) {
		return errNo(codeNonexistent, "No such quota root")
	}
	c.writeQuota(q)
	return nil
}

// GETQUOTAROOT (RFC 9208 §4.1.2): the mailbox must exist.
func cmdGetQuotaRoot(c *conn, cx *cmdCtx) error {
	name, err := c.soleMailboxArg(false)
	if err != nil {
		return err
	}
	if _, err := c.srv.store.GetMailbox(c.ctx, c.acct.ID, name); err != nil {
		return err
	}
	q, err := c.srv.store.Quota(c.ctx, c.acct.ID)
	if err != nil {
		return err
	}
	// RFC 9208 §4.2.2: "QUOTAROOT" SP mailbox *(SP astring).
	c.w.str("* QUOTAROOT ")
	c.writeName(name)
	if hasQuotaRoot(q) {
		c.w.sp()
		c.w.astring(quotaRootName)
	}
	c.w.crlf()
	if hasQuotaRoot(q) {
		c.writeQuota(q)
	}
	return nil
}

// writeQuota sends the QUOTA response of the account's root (RFC 9208
// §4.2.1): each limited resource with its usage and limit.
func (c *conn) writeQuota(q mailstore.Quota) {
	c.w.str("* QUOTA ")
	c.w.astring(quotaRootName)
	c.w.str(" (")
	sep := false
	if q.StorageLimit > 0 {
		c.w.str("STORAGE ")
		c.w.num(uint64(kib(q.StorageUsed)))
		c.w.sp()
		c.w.num(uint64(kib(q.StorageLimit)))
		sep = true
	}
	if q.MessagesLimit > 0 {
		if sep {
			c.w.sp()
		}
		c.w.str("MESSAGE ")
		c.w.num(uint64(q.MessagesUsed))
		c.w.sp()
		c.w.num(uint64(q.MessagesLimit))
	}
	c.w.str(")\r\n")
}

// setQuotaLimit is one resource of a SETQUOTA list.
type setQuotaLimit struct {
	name  string // upper case
	limit uint64
}

// setQuotaArgs parses the arguments of SETQUOTA (RFC 9208 §7):
//
//	setquota          = "SETQUOTA" SP quota-root-name SP setquota-list
//	setquota-list     = "(" [setquota-resource *(SP setquota-resource)] ")"
//	setquota-resource = resource-name SP resource-limit
//	resource-limit    = number64
func (p *parser) setQuotaArgs() (root string, limits []setQuotaLimit, err error) {
	if err := p.sp(); err != nil {
		return "", nil, err
	}
	if root, err = p.astring(); err != nil {
		return "", nil, err
	}
	if err := p.sp(); err != nil {
		return "", nil, err
	}
	err = p.list(func() error {
		if len(limits) == maxSetQuotaResources {
			return errBad("Too many quota resources")
		}
		name, err := p.atom()
		if err != nil {
			return err
		}
		if err := p.sp(); err != nil {
			return err
		}
		n, err := p.number64()
		if err != nil {
			return err
		}
		limits = append(limits, setQuotaLimit{name: strings.ToUpper(name), limit: n})
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	return root, limits, p.end()
}

// SETQUOTA (RFC 9208 §4.1.3): checked for syntax, then refused.
func cmdSetQuota(c *conn, cx *cmdCtx) error {
	if _, _, err := c.p.setQuotaArgs(); err != nil {
		return err
	}
	return errNo(codeNoPerm, "Quota limits are set by the administrator")
}
