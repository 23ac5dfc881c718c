// Package msgparse parses an RFC 5322 / MIME message once, as a stream, at
// delivery time. It records what IMAP and SEARCH need later (envelope, body
// structure with byte offsets, decoded header fields and decoded text) so
// that no frontend ever has to re-parse a stored message.
//
// The parser never holds the whole message in memory: it is an io.Writer fed
// with the message bytes in any chunking; memory is bounded by the limits
// below whatever the input.
package msgparse

import "time"

// Limits bound the parser's memory and work on hostile input.
const (
	// MaxHeaderBytes is the largest header block kept for one part; bytes
	// beyond it are counted in offsets but not parsed.
	MaxHeaderBytes = 256 << 10
	// MaxParts is the largest number of MIME parts recorded in the structure;
	// deeper or further parts are treated as opaque bytes of their parent.
	MaxParts = 1000
	// MaxDepth is the deepest nesting of multipart / message/rfc822 parsed.
	MaxDepth = 32
	// MaxSearchText is the most decoded text (UTF-8 bytes) kept for BODY/TEXT
	// search.
	MaxSearchText = 4 << 20
	// MaxSinkText is the most decoded text passed to a text sink
	// (Parser.SetTextSink), which streams it instead of keeping it.
	MaxSinkText = 64 << 20
	// MaxPreviewChars is the longest preview text in characters (RFC
	// 8970 §3: "MUST NOT exceed 256 characters").
	MaxPreviewChars = 256
	// MaxLineBytes is the longest line examined for boundaries; longer lines
	// are passed through as body bytes.
	MaxLineBytes = 64 << 10
)

// Message is the result of parsing one message.
type Message struct {
	Size       int64 `json:"size"`        // octets of the whole message
	HeaderSize int64 `json:"header_size"` // octets of the top-level header, including the empty line
	Lines      int64 `json:"lines"`       // number of lines of the whole message
	// CRLFSize is Size with every bare LF or bare CR counted as CRLF, plus a
	// CRLF after a last line that lacks a line ending: the octets a POP3 RETR
	// sends before byte-stuffing. Equal to Size for mail received by SMTP.
	CRLFSize int64 `json:"crlf_size"`

	// Date is the parsed Date: header (zero when absent or unparsable).
	Date time.Time `json:"date"`

	Envelope  Envelope `json:"envelope"`
	Structure Part     `json:"structure"`

	// SearchHeaders holds every top-level header field, name lower-cased,
	// value unfolded and RFC 2047-decoded to UTF-8, in message order.
	SearchHeaders []HeaderField `json:"-"`

	// Preview is the message's preview text (RFC 8970 §3): the first
	// inline text/plain or text/html part's decoded text, HTML stripped,
	// white space collapsed to single spaces, at most MaxPreviewChars
	// characters. Nil in parse results stored before it existed (the
	// JSON has no "preview"); a pointer to "" for a message without text.
	Preview *string `json:"preview,omitempty"`

	// Text is the decoded (transfer encoding and charset) text of the text/*
	// parts of the message, joined by newlines, at most MaxSearchText bytes.
	Text string `json:"-"`
}

// HeaderField is one decoded header field.
type HeaderField struct {
	Name  string `json:"n"` // lower case
	Value string `json:"v"` // unfolded, decoded UTF-8
}

// Envelope holds the IMAP ENVELOPE fields (RFC 9051 §7.5.2). String fields
// keep the raw header value (unfolded, not RFC 2047-decoded), as IMAP sends
// them; empty means NIL.
type Envelope struct {
	Date      string    `json:"date,omitempty"`
	Subject   string    `json:"subject,omitempty"`
	From      []Address `json:"from,omitempty"`
	Sender    []Address `json:"sender,omitempty"`
	ReplyTo   []Address `json:"reply_to,omitempty"`
	To        []Address `json:"to,omitempty"`
	Cc        []Address `json:"cc,omitempty"`
	Bcc       []Address `json:"bcc,omitempty"`
	InReplyTo string    `json:"in_reply_to,omitempty"`
	MessageID string    `json:"message_id,omitempty"`
}

// Address is one IMAP envelope address. RFC 9051 §7.5.2 group syntax: a
// group start has Mailbox = group name and Host = ""; a group end has all
// fields empty and Group set.
type Address struct {
	Name    string `json:"name,omitempty"` // raw display name (may hold encoded words)
	Adl     string `json:"adl,omitempty"`
	Mailbox string `json:"mailbox,omitempty"`
	Host    string `json:"host,omitempty"`
	Group   bool   `json:"group,omitempty"` // true for group start and end markers
}

// Param is one MIME parameter (name lower case, value decoded per RFC 2231).
type Param struct {
	Name  string `json:"n"`
	Value string `json:"v"`
}

// Part is one node of the MIME tree (RFC 9051 §7.5.2 BODYSTRUCTURE).
// Offsets are absolute octet offsets into the whole message.
type Part struct {
	Type    string  `json:"type"`    // lower case, e.g. "text"; default "text"
	Subtype string  `json:"subtype"` // lower case, e.g. "plain"; default "plain"
	Params  []Param `json:"params,omitempty"`

	ID          string `json:"id,omitempty"`
	Description string `json:"description,omitempty"`
	Encoding    string `json:"encoding,omitempty"` // Content-Transfer-Encoding, as given; "" means 7BIT
	MD5         string `json:"md5,omitempty"`

	Disposition       string   `json:"disposition,omitempty"` // lower case
	DispositionParams []Param  `json:"disposition_params,omitempty"`
	Language          []string `json:"language,omitempty"`
	Location          string   `json:"location,omitempty"`

	HeaderOffset int64 `json:"ho"` // first octet of this part's header
	HeaderSize   int64 `json:"hs"` // octets of the header including the empty line (0 if none)
	BodyOffset   int64 `json:"bo"` // first octet of the body
	BodySize     int64 `json:"bs"` // octets of the body (IMAP body size)
	BodyLines    int64 `json:"bl"` // lines of the body (text/* and message/rfc822)

	// Parts are the children of a multipart part.
	Parts []Part `json:"parts,omitempty"`
	// Message is set for message/rfc822 (and message/global) parts.
	Message *Embedded `json:"message,omitempty"`
}

// Embedded describes an encapsulated message (message/rfc822).
type Embedded struct {
	Envelope  Envelope `json:"envelope"`
	Structure Part     `json:"structure"`
}
