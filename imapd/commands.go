package imapd

import (
	"strconv"
	"strings"
)

// command is one entry of the command table: the states in which it is
// allowed (RFC 9051 §6) and whether it has a UID form.
type command struct {
	states connState
	uid    bool
	run    func(c *conn, cx *cmdCtx) error
}

const (
	anyState      = stateNotAuth | stateAuth | stateSelected
	authenticated = stateAuth | stateSelected
)

// commands is the command table. It is filled in init to break the
// initialization cycle between the table and the handlers that consult it.
var commands map[string]*command

func init() {
	commands = map[string]*command{
		// Any state (RFC 9051 §6.1).
		"CAPABILITY": {states: anyState, run: cmdCapability},
		"NOOP":       {states: anyState, run: cmdNoop},
		"LOGOUT":     {states: anyState, run: cmdLogout},
		"ID":         {states: anyState, run: cmdID}, // RFC 2971

		// Not authenticated (RFC 9051 §6.2).
		"STARTTLS":     {states: stateNotAuth, run: cmdStartTLS},
		"AUTHENTICATE": {states: stateNotAuth, run: cmdAuthenticate},
		"LOGIN":        {states: stateNotAuth, run: cmdLogin},

		// Authenticated (RFC 9051 §6.3).
		"ENABLE":       {states: stateAuth, run: cmdEnable}, // RFC 5161 §3.1: before SELECT
		"SELECT":       {states: authenticated, run: cmdSelect},
		"EXAMINE":      {states: authenticated, run: cmdSelect},
		"CREATE":       {states: authenticated, run: cmdCreate},
		"DELETE":       {states: authenticated, run: cmdDelete},
		"RENAME":       {states: authenticated, run: cmdRename},
		"SUBSCRIBE":    {states: authenticated, run: cmdSubscribe},
		"UNSUBSCRIBE":  {states: authenticated, run: cmdSubscribe},
		"LIST":         {states: authenticated, run: cmdList},
		"LSUB":         {states: authenticated, run: cmdLsub},
		"NAMESPACE":    {states: authenticated, run: cmdNamespace}, // RFC 2342
		"STATUS":       {states: authenticated, run: cmdStatus},
		"APPEND":       {states: authenticated, run: cmdAppend},
		"IDLE":         {states: authenticated, run: cmdIdle},         // RFC 2177
		"GETMETADATA":  {states: authenticated, run: cmdGetMetadata},  // RFC 5464 §4.2
		"SETMETADATA":  {states: authenticated, run: cmdSetMetadata},  // RFC 5464 §4.3
		"GETQUOTA":     {states: authenticated, run: cmdGetQuota},     // RFC 9208 §4.1.1
		"GETQUOTAROOT": {states: authenticated, run: cmdGetQuotaRoot}, // RFC 9208 §4.1.2
		"SETQUOTA":     {states: authenticated, run: cmdSetQuota},     // RFC 9208 §4.1.3 (refused)
		"COMPRESS":     {states: authenticated, run: cmdCompress},     // RFC 4978 §3

		// Selected (RFC 9051 §6.4).
		"CHECK":    {states: stateSelected, run: cmdNoop}, // RFC 3501 §6.4.1; gone in IMAP4rev2
		"CLOSE":    {states: stateSelected, run: cmdClose},
		"UNSELECT": {states: stateSelected, run: cmdUnselect}, // RFC 3691
		"EXPUNGE":  {states: stateSelected, uid: true, run: cmdExpunge},
		"SEARCH":   {states: stateSelected, uid: true, run: cmdSearch},
		"FETCH":    {states: stateSelected, uid: true, run: cmdFetch},
		"STORE":    {states: stateSelected, uid: true, run: cmdStore},
		"COPY":     {states: stateSelected, uid: true, run: cmdCopy},
		"MOVE":     {states: stateSelected, uid: true, run: cmdCopy},   // RFC 6851
		"SORT":     {states: stateSelected, uid: true, run: cmdSort},   // RFC 5256 §3
		"THREAD":   {states: stateSelected, uid: true, run: cmdThread}, // RFC 5256 §3

		"CANCELUPDATE": {states: stateSelected, run: cmdCancelUpdate}, // RFC 5267 §4.3.5
	}
}

// mayExpunge reports whether EXPUNGE/VANISHED responses may be sent while
// answering cx: not during FETCH, STORE, SEARCH, SORT or THREAD, whose
// sequence numbers would go out of step; their UID forms may (RFC 9051
// §7.5.1, §7.4.1; RFC 5256 §3).
func (cx *cmdCtx) mayExpunge() bool {
	if cx.uid {
		return true
	}
	switch cx.name {
	case "FETCH", "STORE", "SEARCH", "SORT", "THREAD":
		return false
	}
	return true
}

// capabilities lists what the connection may use now (RFC 9051 §7.2.2).
// Only complete extensions are listed.
func (c *conn) capabilities() string {
	caps := []string{"IMAP4rev1", "IMAP4rev2"}
	if c.state == stateNotAuth {
		if c.srv.cfg.TLS != nil && !c.tlsOn {
			caps = append(caps, "STARTTLS")
		}
		if c.plaintextAuthAllowed() {
			for _, m := range c.srv.auth.Mechanisms() {
				caps = append(caps, "AUTH="+strings.ToUpper(m))
			}
			caps = append(caps, "SASL-IR") // RFC 4959
		} else {
			caps = append(caps, "LOGINDISABLED") // RFC 9051 §6.2.3
		}
	}
	caps = append(caps,
		"LITERAL+",              // RFC 7888
		"ID",                    // RFC 2971
		"ENABLE",                // RFC 5161
		"IDLE",                  // RFC 2177
		"UNSELECT",              // RFC 3691
		"NAMESPACE",             // RFC 2342
		"UIDPLUS",               // RFC 4315
		"MULTIAPPEND",           // RFC 3502
		"CATENATE",              // RFC 4469
		"MOVE",                  // RFC 6851
		"CHILDREN",              // RFC 3348
		"LIST-EXTENDED",         // RFC 5258
		"LIST-STATUS",           // RFC 5819
		"SPECIAL-USE",           // RFC 6154
		"CREATE-SPECIAL-USE",    // RFC 6154 §3
		"ESEARCH",               // RFC 4731
		"SEARCHRES",             // RFC 5182
		"SORT",                  // RFC 5256
		"SORT=DISPLAY",          // RFC 5957
		"ESORT",                 // RFC 5267 §3
		"CONTEXT=SEARCH",        // RFC 5267 §4
		"CONTEXT=SORT",          // RFC 5267 §4
		"PARTIAL",               // RFC 9394
		"THREAD=ORDEREDSUBJECT", // RFC 5256
		"THREAD=REFERENCES",     // RFC 5256
		"CONDSTORE",             // RFC 7162
		"QRESYNC",               // RFC 7162
		"STATUS=SIZE",           // RFC 8438
		"APPENDLIMIT="+strconv.FormatInt(c.srv.cfg.MaxMessageSize, 10), // RFC 7889
		"BINARY",          // RFC 3516
		"UTF8=ACCEPT",     // RFC 6855
		"OBJECTID",        // RFC 8474
		"SAVEDATE",        // RFC 8514
		"PREVIEW",         // RFC 8970
		"METADATA",        // RFC 5464
		"METADATA-SERVER", // RFC 5464
		"LIST-METADATA",   // RFC 9590
		// RFC 9208: both resources of the account's quota root; no QUOTASET
		// (SETQUOTA is refused).
		"QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE",
		"COMPRESS=DEFLATE", // RFC 4978
	)
	return strings.Join(caps, " ")
}

// plaintextAuthAllowed: LOGIN and AUTHENTICATE PLAIN/LOGIN send passwords
// in the clear, so they need TLS, a loopback client or explicit permission
// (RFC 9051 §6.2.3, RFC 8314).
func (c *conn) plaintextAuthAllowed() bool {
	return c.fc.PlaintextAuthOK(c.tlsOn)
}
