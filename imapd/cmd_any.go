package imapd

import (
	"strings"
)

// CAPABILITY (RFC 9051 §6.1.1).
func cmdCapability(c *conn, cx *cmdCtx) error {
	if err := c.p.end(); err != nil {
		return err
	}
	c.w.str("* CAPABILITY ")
	c.w.str(c.capabilities())
	c.w.crlf()
	return nil
}

// NOOP (RFC 9051 §6.1.2) and CHECK (RFC 3501 §6.4.1): report changes.
func cmdNoop(c *conn, cx *cmdCtx) error {
	if err := c.p.end(); err != nil {
		return err
	}
	cx.refresh = true
	return nil
}

// LOGOUT (RFC 9051 §6.1.3).
func cmdLogout(c *conn, cx *cmdCtx) error {
	if err := c.p.end(); err != nil {
		return err
	}
	c.w.str("* BYE Logging out\r\n")
	c.unselect()
	c.state = stateLogout
	return nil
}

// RFC 2971 §3.3 limits on ID parameters.
const (
	maxIDPairs    = 30
	maxIDFieldLen = 30
	maxIDValueLen = 1024
)

// ID (RFC 2971): the client's identification is logged; the server names
// itself without a version.
func cmdID(c *conn, cx *cmdCtx) error {
	if err := c.p.sp(); err != nil {
		return err
	}
	var params []any
	if !c.p.acceptNIL() {
		n := 0
		var field string
		err := c.p.list(func() error {
			n++
			if n > 2*maxIDPairs {
				return errBad("Too many ID parameters")
			}
			if n%2 == 1 {
				s, err := c.p.string()
				if err != nil {
					return err
				}
				if len(s) > maxIDFieldLen {
					return errBad("ID field name too long")
				}
				field = s
				return nil
			}
			if c.p.acceptNIL() {
				return nil
			}
			v, err := c.p.string()
			if err != nil {
				return err
			}
			if len(v) > maxIDValueLen {
				return errBad("ID value too long")
			}
			if len(params) < 2*8 {
				params = append(params, "id."+strings.ToLower(sanitizeLog(field)), sanitizeLog(v))
			}
			return nil
		})
		if err != nil {
			return err
		}
		if n%2 != 0 {
			return errBad("ID parameters must be pairs")
		}
	}
	if err := c.p.end(); err != nil {
		return err
	}
	if len(params) > 0 {
		c.log.Debug("client id", params...)
	}
	c.w.str(`* ID ("name" "Postrider")` + "\r\n")
	return nil
}

// sanitizeLog keeps at most 64 printable ASCII characters of s.
func sanitizeLog(s string) string {
	b := make([]byte, 0, min(len(s), 64))
	for i := 0; i < len(s) && len(b) < 64; i++ {
		if s[i] >= 0x20 && s[i] < 0x7f {
			b = append(b, s[i])
		}
	}
	return string(b)
}

// ENABLE (RFC 5161, RFC 9051 §6.3.1): IMAP4rev2, CONDSTORE, QRESYNC
// (RFC 7162 §3.2.3, implies CONDSTORE) and UTF8=ACCEPT (RFC 6855 §3).
// Unknown capabilities are ignored.
func cmdEnable(c *conn, cx *cmdCtx) error {
	var names []string
	for {
		if err := c.p.sp(); err != nil {
			if len(names) == 0 {
				return err
			}
			break
		}
		a, err := c.p.atom()
		if err != nil {
			return err
		}
		if len(names) >= 32 {
			return errBad("Too many capabilities")
		}
		names = append(names, strings.ToUpper(a))
		if c.p.atEnd() {
			break
		}
	}
	if err := c.p.end(); err != nil {
		return err
	}
	var enabled []string
	for _, n := range names {
		var flag *bool
		switch n {
		case "IMAP4REV2":
			flag, n = &c.rev2, "IMAP4rev2"
		case "CONDSTORE":
			flag = &c.condstore
		case "QRESYNC":
			flag = &c.qresync
		case "UTF8=ACCEPT":
			flag = &c.utf8
		default:
			continue
		}
		if !*flag {
			*flag = true
			enabled = append(enabled, n)
		}
	}
	if c.qresync {
		c.condstore = true
	}
	c.w.utf8 = c.utf8Names()
	c.w.str("* ENABLED")
	for _, n := range enabled {
		c.w.sp()
		c.w.str(n)
	}
	c.w.crlf()
	return nil
}

// NAMESPACE (RFC 2342, RFC 9051 §6.3.10): one personal namespace with an
// empty prefix; there are no other users' or shared namespaces.
func cmdNamespace(c *conn, cx *cmdCtx) error {
	if err := c.p.end(); err != nil {
		return err
	}
	c.w.str(`* NAMESPACE (("" "/")) NIL NIL` + "\r\n")
	return nil
}
