package imapmsg

import (
	"errors"
	"io"
	"strings"

	"github.com/postrider/postrider/mailstore/msgparse"
)

// ErrUnknownEncoding is returned for a Content-Transfer-Encoding that
// BINARY cannot decode; the server answers NO [UNKNOWN-CTE] (RFC 3516 §4.3,
// RFC 9051 §7.1).
var ErrUnknownEncoding = errors.New("unknown content-transfer-encoding")

// decodeChunk is the input read at a time by the streaming decoders.
const decodeChunk = 32 << 10

// maxPendingSpace bounds the white space the quoted-printable decoder holds
// back while it cannot yet tell whether it is trailing (to be deleted, RFC
// 2045 §6.7 rule 3); longer runs are passed through.
const maxPendingSpace = 1024

// normalizeEncoding returns the lower-case mechanism token of a
// Content-Transfer-Encoding value ("" when there is none).
func normalizeEncoding(enc string) string {
	return strings.ToLower(leadingToken(enc))
}

func knownEncoding(enc string) bool {
	switch enc {
	case "", "7bit", "8bit", "binary", "base64", "quoted-printable":
		return true
	}
	return false
}

// PartEncoding returns the Content-Transfer-Encoding (lower case) of the part
// that part names, for BINARY[<part>] (RFC 3516 §4.2, RFC 9051 §6.4.5).
// BINARY[] (the whole message) and multipart parts are never decoded (RFC
// 2045 §6.4 allows only identity encodings on composite types) and yield
// "". A missing or unparsable header value yields "" too, which, like
// "7bit", "8bit" and "binary", means "send as is". An encoding BINARY
// cannot decode is returned together with ErrUnknownEncoding.
func PartEncoding(m *msgparse.Message, part []int) (string, error) {
	if m == nil {
		return "", ErrNoSuchPart
	}
	if len(part) == 0 {
		return "", nil
	}
	p, err := locate(m, part)
	if err != nil {
		return "", err
	}
	if isMultipart(p) {
		return "", nil
	}
	enc := normalizeEncoding(p.Encoding)
	if !knownEncoding(enc) {
		return enc, ErrUnknownEncoding
	}
	return enc, nil
}

// DecodeReader returns a reader of the content-transfer-decoded data of r
// (RFC 3516 BINARY): base64 (RFC 2045 §6.8; octets outside the alphabet,
// line breaks included, are ignored, and decoding stops at the padding) and
// quoted-printable (RFC 2045 §6.7; soft line breaks and trailing white space
// removed, malformed escapes passed through) are decoded; 7bit, 8bit,
// binary and "" pass r through; anything else gives ErrUnknownEncoding.
// Decoding streams with bounded memory.
func DecodeReader(r io.Reader, encoding string) (io.Reader, error) {
	switch enc := normalizeEncoding(encoding); enc {
	case "", "7bit", "8bit", "binary":
		return r, nil
	case "base64":
		return &decoder{src: r, b64: &base64State{}}, nil
	case "quoted-printable":
		return &decoder{src: r, qp: &qpState{}}, nil
	}
	return nil, ErrUnknownEncoding
}

// BinarySize returns the size of the decoded data of r, for BINARY.SIZE
// (RFC 3516 §4.2), reading r once as a stream.
func BinarySize(r io.Reader, encoding string) (int64, error) {
	d, err := DecodeReader(r, encoding)
	if err != nil {
		return 0, err
	}
	return io.Copy(io.Discard, d)
}

// decoder drives one of the byte-at-a-time state machines over chunks of
// src, buffering at most one chunk of output.
type decoder struct {
	src io.Reader
	in  []byte
	out []byte
	pos int // read position in out
	err error
	b64 *base64State // exactly one of b64 and qp is set
	qp  *qpState
}

func (d *decoder) Read(p []byte) (int, error) {
	for d.pos == len(d.out) {
		if d.err != nil {
			return 0, d.err
		}
		if d.in == nil {
			d.in = make([]byte, decodeChunk)
		}
		n, err := d.src.Read(d.in)
		d.out, d.pos = d.out[:0], 0
		if d.b64 != nil {
			d.out = d.b64.step(d.out, d.in[:n])
		} else {
			d.out = d.qp.step(d.out, d.in[:n])
		}
		if err != nil {
			if d.b64 != nil {
				d.out = d.b64.finish(d.out)
			} else {
				d.out = d.qp.finish(d.out)
			}
			d.err = err
		}
	}
	n := copy(p, d.out[d.pos:])
	d.pos += n
	return n, nil
}

// base64State decodes base64 leniently: every octet outside the alphabet
// is ignored (RFC 2045 §6.8), and the first "=" that pads a quantum ends the
// data.
type base64State struct {
	quad [4]byte
	n    int
	done bool
}

var b64Value = func() [256]byte {
	var t [256]byte
	for i := range t {
		t[i] = 0xff
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	return t
}()

func (s *base64State) step(out, in []byte) []byte {
	for _, c := range in {
		if s.done {
			return out
		}
		if c == '=' {
			// Padding: a quantum of 2 or 3 sextets is complete and the data
			// ends; a lone "=" (or one after 0 or 1 sextet) is noise.
			if s.n >= 2 {
				out = s.finish(out)
				s.done = true
			}
			continue
		}
		v := b64Value[c]
		if v == 0xff {
			continue
		}
		s.quad[s.n] = v
		s.n++
		if s.n == 4 {
			out = append(out,
				s.quad[0]<<2|s.quad[1]>>4,
				s.quad[1]<<4|s.quad[2]>>2,
				s.quad[2]<<6|s.quad[3])
			s.n = 0
		}
	}
	return out
}

// finish flushes a partial quantum: 2 sextets give 1 octet, 3 give 2; a
// single sextet carries no whole octet and is dropped.
func (s *base64State) finish(out []byte) []byte {
	switch s.n {
	case 2:
		out = append(out, s.quad[0]<<2|s.quad[1]>>4)
	case 3:
		out = append(out, s.quad[0]<<2|s.quad[1]>>4, s.quad[1]<<4|s.quad[2]>>2)
	}
	s.n = 0
	return out
}

// Quoted-printable decoder states.
const (
	qpNormal = iota
	qpCR     // saw CR in text
	qpEq     // saw "="
	qpEqHex  // saw "=" and one hex digit
	qpEqWS   // saw "=" and white space: soft line break or literal "="
	qpEqCR   // saw "=" [white space] CR
)

// qpState decodes quoted-printable (RFC 2045 §6.7) leniently, as a state
// machine: "=XX" (either case) is an octet; "=" followed by optional white
// space and a line break is a soft line break; any other "=" is itself;
// white space before a line break or the end is deleted (rule 3); line
// breaks and every other octet pass through.
type qpState struct {
	state int
	hex   byte
	ws    []byte // held-back white space of the text
	eqws  []byte // white space after "="
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

func (s *qpState) flushWS(out []byte) []byte {
	out = append(out, s.ws...)
	s.ws = s.ws[:0]
	return out
}

func (s *qpState) step(out, in []byte) []byte {
	for i := 0; i < len(in); i++ {
		c := in[i]
		switch s.state {
		case qpNormal:
			switch c {
			case '=':
				out = s.flushWS(out)
				s.state = qpEq
			case ' ', '\t':
				if len(s.ws) >= maxPendingSpace {
					out = s.flushWS(out)
				}
				s.ws = append(s.ws, c)
			case '\r':
				s.state = qpCR
			case '\n':
				s.ws = s.ws[:0] // trailing white space is deleted
				out = append(out, '\n')
			default:
				out = s.flushWS(out)
				out = append(out, c)
			}
		case qpCR:
			s.state = qpNormal
			if c == '\n' {
				s.ws = s.ws[:0]
				out = append(out, '\r', '\n')
				continue
			}
			out = s.flushWS(out)
			out = append(out, '\r')
			i-- // reconsider c in qpNormal
		case qpEq:
			if _, ok := unhex(c); ok {
				s.hex = c
				s.state = qpEqHex
				continue
			}
			switch c {
			case ' ', '\t':
				s.eqws = append(s.eqws[:0], c)
				s.state = qpEqWS
			case '\r':
				s.eqws = s.eqws[:0]
				s.state = qpEqCR
			case '\n':
				s.state = qpNormal // soft line break
			default:
				out = append(out, '=')
				s.state = qpNormal
				i--
			}
		case qpEqHex:
			s.state = qpNormal
			lo, ok := unhex(c)
			if !ok {
				out = append(out, '=', s.hex)
				i--
				continue
			}
			hi, _ := unhex(s.hex)
			out = append(out, hi<<4|lo)
		case qpEqWS:
			switch c {
			case ' ', '\t':
				if len(s.eqws) < maxPendingSpace {
					s.eqws = append(s.eqws, c)
					continue
				}
				// Too much space for a soft break: a literal "=".
				out = append(out, '=')
				s.ws = append(s.ws[:0], s.eqws...)
				s.state = qpNormal
				i--
			case '\r':
				s.state = qpEqCR
			case '\n':
				s.state = qpNormal // soft line break
			default:
				out = append(out, '=')
				s.ws = append(s.ws[:0], s.eqws...)
				s.state = qpNormal
				i--
			}
		case qpEqCR:
			if c == '\n' {
				s.state = qpNormal // soft line break
				continue
			}
			out = append(out, '=')
			s.ws = append(s.ws[:0], s.eqws...)
			s.state = qpCR
			i--
		}
	}
	return out
}

// finish ends the data: the end is a line end, so held-back white space
// and a final "=" (soft break) are dropped.
func (s *qpState) finish(out []byte) []byte {
	switch s.state {
	case qpCR:
		out = append(out, '\r')
	case qpEqHex:
		out = append(out, '=', s.hex)
	}
	s.state = qpNormal
	s.ws = s.ws[:0]
	return out
}
