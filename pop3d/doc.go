// Package pop3d is Postrider's POP3 server: RFC 1939 with the RFC 2449
// extension mechanism (CAPA, response codes, PIPELINING), STLS (RFC 2595
// §4) and implicit TLS, SASL AUTH (RFC 5034) with PLAIN and LOGIN through
// the shared auth module, and UTF8 (RFC 6856 §2), over the shared
// mailstore, on any number of nodes.
//
// # Maildrop
//
// The maildrop is the account's INBOX as it is when the session enters the
// TRANSACTION state; message numbers stay fixed for the session. Messages
// carrying HiddenKeyword ("$POP3Deleted", see Config.KeepDeleted) are not
// part of it. RETR n reads message n and the next ones of the maildrop in
// one store call (up to 64 messages and 1 MiB; the first read covers the
// RETRs a client has pipelined, and a client that fetches one by one gets a
// window that doubles while it goes on in order), serves the following
// RETRs and TOPs from memory and, during a download in order, reads the
// next batch in the background; a download costs a store round trip per
// batch, not per message (readahead.go). The buffers of all sessions share
// Config.ReadAheadMemory; beyond it a session reads 64 KiB at a time, and
// nothing in the background (aheadbudget.go). A change notified for the
// account drops what was read ahead. Messages over 256 KiB
// are never held whole: RETR and TOP stream them from the store through a
// fixed-size buffer.
//
// # Sizes
//
// LIST and STAT report the exact number of octets RETR sends before the
// terminating ".CRLF", not counting byte-stuffing (RFC 1939 §3, §5, §11).
// RETR sends every line ending as CRLF (bare LF and bare CR, which an
// IMAP APPEND may have stored, become CRLF) and ends the last line with
// CRLF if the message lacks one. The store records that size with every
// message (MessageMeta.CRLFSize, computed by the parser at delivery), so
// the maildrop listing at login has every size and no command reads a
// message body to size it. RETR counts what it sends and logs an error if
// the count ever differs from the listed size.
//
// # UIDL
//
// The unique-id of a message is "<UIDVALIDITY>.<UID>" of INBOX (RFC 1939
// §7): stable for as long as the message exists, the same on every node,
// and never reused for another message.
//
// # Deleting
//
// DELE only marks; QUIT commits in the UPDATE state (RFC 1939 §6): by
// default the messages are expunged from INBOX, so IMAP clients see them
// vanish through the usual mod-sequences and notifications; with
// Config.KeepDeleted they get HiddenKeyword instead and stay for IMAP. A
// connection that ends without QUIT deletes nothing. Messages that another
// client expunged meanwhile give "-ERR" on RETR/TOP (the session goes on)
// and are silently skipped at QUIT. With Config.MarkSeenOnRetr, RETR sets
// \Seen (stored in batches: at QUIT, at disconnect, and every 30 s).
//
// # Locking
//
// One POP3 session per maildrop in the whole cluster, through a renewed
// store lease (lease.go): a second login anywhere gets "-ERR [IN-USE]"; a
// dead node's lock expires after Config.LockTTL.
//
// # Authentication
//
// USER/PASS and AUTH PLAIN/LOGIN are accepted only over TLS, from loopback
// or with Config.AllowInsecureAuth; elsewhere CAPA does not list them and
// they fail with "-ERR [AUTH]". APOP is not offered: it needs the
// plaintext password on the server, which Postrider never stores. Failed
// logins are throttled by the auth module; a connection is closed after
// MaxAuthFailures.
//
// # Limits
//
// Command lines are at most 255 octets (RFC 2449 §4); a connection is
// closed after Config.MaxErrors failed commands, on any unparsable line or
// unknown command before login, and after PreLoginTimeout (before login)
// or IdleTimeout (after, RFC 1939 §3's ten minutes) without a command.
// Concurrent connections per client address are limited. Plaintext sent
// after STLS is discarded. Trusted proxies must send a PROXY header.
//
// # Not implemented
//
// APOP (see above), LOGIN-DELAY and LANG (not advertised), and RFC 6857/6858
// downgrading of internationalized messages for clients that did not send
// UTF8: messages are always sent as stored.
package pop3d
