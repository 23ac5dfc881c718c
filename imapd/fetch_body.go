package imapd

import (
	"bytes"
	"errors"
	"io"
	"strings"

	"github.com/postrider/postrider/imapd/imapmsg"
	"github.com/postrider/postrider/mailstore"
)

// maxFilterHeader bounds the header octets read into memory for
// HEADER.FIELDS(.NOT) filtering; the stored parse keeps at most
// msgparse.MaxHeaderBytes of a header anyway.
const maxFilterHeader = 1 << 20

// writeOrigin writes "<origin>" after a section name when a partial range
// was requested (RFC 9051 §7.5.2 BODY[<section>]<<origin octet>>).
func (c *conn) writeOrigin(it *fetchItem) {
	if it.partial {
		c.w.byte('<')
		c.w.num(uint64(it.origin))
		c.w.byte('>')
	}
}

// partialRange applies <origin.count> to a section of size octets.
func partialRange(size int64, it *fetchItem) (off, n int64) {
	if !it.partial {
		return 0, size
	}
	if it.origin >= size {
		return size, 0
	}
	return it.origin, min(it.count, size-it.origin)
}

// writeSection writes a BODY[...] / RFC822.* item: the octets of the
// stored message the section denotes, streamed from the store.
func (c *conn) writeSection(m *fetchMsg, it *fetchItem) error {
	w := &c.w
	w.str(it.name)
	var off, length int64
	filter := false
	if it.whole {
		length = m.meta.Size
	} else {
		var err error
		off, length, filter, err = imapmsg.Resolve(m.parsed, it.sec)
		if errors.Is(err, imapmsg.ErrNoSuchPart) {
			c.writeOrigin(it)
			w.str(` ""`)
			return nil
		}
		if err != nil {
			return err
		}
	}
	if filter {
		data, err := c.readRange(m, off, min(length, maxFilterHeader))
		c.writeOrigin(it)
		if errors.Is(err, mailstore.ErrNoSuchMessage) {
			w.str(" NIL")
			return nil
		}
		if err != nil {
			return err
		}
		data = bytes.ReplaceAll(imapmsg.FilterHeader(data, it.sec.Fields, it.sec.Specifier == "HEADER.FIELDS.NOT"), []byte{0}, []byte{0x80})
		o, n := partialRange(int64(len(data)), it)
		w.sp()
		w.literalHeader(n, false)
		w.raw(data[o : o+n])
		return w.err
	}
	o, n := partialRange(length, it)
	c.writeOrigin(it)
	w.sp()
	if n == 0 {
		w.str(`""`)
		return nil
	}
	rc, err := c.openRange(m, off+o, n)
	if errors.Is(err, mailstore.ErrNoSuchMessage) {
		w.str("NIL") // expunged meanwhile (RFC 9051 §7.5.2 nstring)
		return nil
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	w.literalHeader(n, false)
	return w.copyN(nonulReader{rc}, n)
}

// nonulReader replaces NUL octets with 0x80: a literal may not contain NUL
// (RFC 9051 §9 CHAR8); only BINARY's literal8 carries binary data
// exactly. The length is unchanged. (Dovecot does the same.)
type nonulReader struct{ r io.Reader }

func (n nonulReader) Read(b []byte) (int, error) {
	m, err := n.r.Read(b)
	for i := bytes.IndexByte(b[:m], 0); i >= 0; {
		b[i] = 0x80
		j := bytes.IndexByte(b[i+1:m], 0)
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return m, err
}

// openRange returns octets [off, off+n) of a message: from its content in
// memory when that holds them (a small message, or a header section of a
// larger one), else streamed from the store.
func (c *conn) openRange(m *fetchMsg, off, n int64) (io.ReadCloser, error) {
	if d := m.content.Data; off >= 0 && n >= 0 && off+n <= int64(len(d)) {
		return io.NopCloser(bytes.NewReader(d[off : off+n])), nil
	}
	return c.srv.store.OpenMessage(c.ctx, c.acct.ID, c.sel.mbox.ID, m.meta.UID, off, n)
}

// readRange reads octets of a message into memory (bounded by the
// caller). The result may be the content's own memory: read only.
func (c *conn) readRange(m *fetchMsg, off, n int64) ([]byte, error) {
	if d := m.content.Data; off >= 0 && n >= 0 && off+n <= int64(len(d)) {
		return d[off : off+n], nil
	}
	rc, err := c.openRange(m, off, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, n))
}

// identityEncoding reports whether a Content-Transfer-Encoding needs no
// decoding (RFC 2045 §6.1).
func identityEncoding(enc string) bool {
	switch strings.ToLower(strings.TrimSpace(enc)) {
	case "", "7bit", "8bit", "binary":
		return true
	}
	return false
}

// writeBinary writes BINARY[...] or BINARY.SIZE[...] (RFC 3516 §4.2): the
// part's body with its content transfer encoding undone. The decoded size
// must be known before the literal, so an encoded part is decoded twice
// (streamed both times) rather than buffered.
func (c *conn) writeBinary(m *fetchMsg, it *fetchItem) error {
	w := &c.w
	w.str(it.name)
	var off, length int64
	enc := ""
	if it.whole {
		length = m.meta.Size
	} else {
		var err error
		off, length, _, err = imapmsg.Resolve(m.parsed, imapmsg.Section{Part: it.sec.Part})
		if err == nil {
			enc, err = imapmsg.PartEncoding(m.parsed, it.sec.Part)
		}
		if errors.Is(err, imapmsg.ErrNoSuchPart) {
			if it.kind == fetchBinarySize {
				w.str(" 0")
			} else {
				c.writeOrigin(it)
				w.str(" NIL")
			}
			return nil
		}
		if err != nil {
			return err
		}
	}
	identity := identityEncoding(enc)
	size := length
	if !identity {
		var err error
		if size, err = c.decodedSize(m, off, length, enc); errors.Is(err, mailstore.ErrNoSuchMessage) {
			c.writeOrigin(it)
			w.str(" NIL")
			return nil
		} else if err != nil {
			return err
		}
	}
	if it.kind == fetchBinarySize {
		w.sp()
		w.num(uint64(size))
		return nil
	}
	o, n := partialRange(size, it)
	c.writeOrigin(it)
	w.sp()
	if n == 0 {
		w.str(`""`)
		return nil
	}
	start, count := off, length
	if identity {
		start, count = off+o, n
	}
	rc, err := c.openRange(m, start, count)
	if errors.Is(err, mailstore.ErrNoSuchMessage) {
		w.str("NIL")
		return nil
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	var r io.Reader = rc
	if !identity {
		if r, err = imapmsg.DecodeReader(rc, enc); err != nil {
			return err
		}
		if _, err := io.CopyN(io.Discard, r, o); err != nil {
			return err
		}
	}
	w.literalHeader(n, true)
	return w.copyN(r, n)
}

// decodedSize counts the decoded octets of a stored range.
func (c *conn) decodedSize(m *fetchMsg, off, length int64, enc string) (int64, error) {
	rc, err := c.openRange(m, off, length)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	r, err := imapmsg.DecodeReader(rc, enc)
	if err != nil {
		return 0, err
	}
	return io.Copy(io.Discard, r)
}
