package imapd

import (
	"bufio"
	"errors"
	"io"
)

// inflater decodes the client's half of a COMPRESS=DEFLATE connection
// (RFC 4978, RFC 1951). It is written here because the decoders at hand
// wait for input a network peer has no reason to send: a client ends each
// command with a flush, and zlib's Z_PARTIAL_FLUSH (isync's mbsync uses it)
// completes the block but sends only whole octets of the empty block after
// it. compress/flate returns decoded data only at a stored block, a full
// window or the end of the stream (golang.org/issue/31514), and
// klauspost/compress's partial-block mode first reads ten bits beyond a
// block's last code, which may never come: both sat on mbsync's commands.
//
// This decoder reads one bit at a time (canonical Huffman decoding as in
// RFC 1951 §3.2.2), so it never needs an octet the client has not sent,
// and before it would wait for more input it returns what it has decoded.
// Its state is a 32 KB window (the most a DEFLATE stream refers back) and
// two code tables, allocated once per compressed connection; client input
// is commands and APPEND uploads, so bit-at-a-time decoding is fast enough.
type inflater struct {
	r     *bufio.Reader
	err   error
	bits  uint32 // input bits not yet used, least significant first
	nbits uint

	win  [1 << 15]byte
	wpos int  // next write position in win
	full bool // win has wrapped: any distance up to 32 KB is valid

	state             int
	final             bool // the current block is the last
	stored            int  // octets left in a stored block
	copyLen, copyDist int  // a back-reference not yet fully output

	lit, dist huffman
}

const (
	infHeader  = iota // at a block header
	infStored         // in a stored block
	infHuffman        // in a fixed or dynamic Huffman block
	infDone           // after the final block
)

// huffman is a canonical Huffman code: how many codes of each length and
// the symbols in code order (RFC 1951 §3.2.2).
type huffman struct {
	count  [16]uint16
	symbol [288]uint16
}

// errInflate is corrupt compressed input.
var errInflate = errors.New("imapd: invalid DEFLATE data")

// build makes h from the code lengths of the symbols; it fails on an
// over-subscribed code, or an incomplete one unless incomplete is allowed
// (RFC 1951 allows a lone distance code; zlib accepts incomplete literal
// codes only in that shape too, which decoding rejects anyway when an
// unused code appears).
func (h *huffman) build(lengths []uint8) bool {
	h.count = [16]uint16{}
	for _, l := range lengths {
		h.count[l]++
	}
	if int(h.count[0]) == len(lengths) {
		return true // no codes: any use of the table fails
	}
	left := 1
	for l := 1; l < 16; l++ {
		left <<= 1
		left -= int(h.count[l])
		if left < 0 {
			return false
		}
	}
	var offs [16]uint16
	for l := 1; l < 15; l++ {
		offs[l+1] = offs[l] + h.count[l]
	}
	for s, l := range lengths {
		if l != 0 {
			h.symbol[offs[l]] = uint16(s)
			offs[l]++
		}
	}
	return true
}

func newInflater(r *bufio.Reader) *inflater { return &inflater{r: r} }

// more reads one octet into the bit buffer. With yield, it returns false
// instead of waiting when no input is buffered.
func (z *inflater) more(yield bool) bool {
	if yield && z.r.Buffered() == 0 {
		return false
	}
	c, err := z.r.ReadByte()
	if err != nil {
		z.err = noEOF(err)
		return false
	}
	z.bits |= uint32(c) << z.nbits
	z.nbits += 8
	return true
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// need makes n ≤ 24 bits available, waiting for input.
func (z *inflater) need(n uint) bool {
	for z.nbits < n {
		if !z.more(false) {
			return false
		}
	}
	return true
}

// take consumes n available bits.
func (z *inflater) take(n uint) int {
	v := int(z.bits & (1<<n - 1))
	z.bits >>= n
	z.nbits -= n
	return v
}

// getBits waits for and consumes n bits.
func (z *inflater) getBits(n uint) (int, bool) {
	if !z.need(n) {
		return 0, false
	}
	return z.take(n), true
}

// decode reads one symbol of h. Bits are consumed only when the symbol is
// complete; with yield, it returns -2 rather than wait for input, and -1 on
// an error (z.err set).
func (z *inflater) decode(h *huffman, yield bool) int {
	code, first, index := 0, 0, 0
	for l := uint(1); l < 16; l++ {
		for z.nbits < l {
			if !z.more(yield) {
				if z.err != nil {
					return -1
				}
				return -2
			}
		}
		code |= int(z.bits>>(l-1)) & 1
		count := int(h.count[l])
		if code-count < first {
			z.take(l)
			return int(h.symbol[index+code-first])
		}
		index += count
		first = (first + count) << 1
		code <<= 1
	}
	z.err = errInflate
	return -1
}

var (
	lenBase  = [29]uint16{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lenExtra = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase = [30]uint16{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
		2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtra    = [30]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
	codeLenOrder = [19]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}
	fixedLit     huffman
	fixedDist    huffman
)

// The fixed codes (RFC 1951 §3.2.6).
func init() {
	if !buildFixed() {
		panic("imapd: fixed Huffman codes")
	}
}

func buildFixed() bool {
	{
		var l [288]uint8
		for i := range l {
			switch {
			case i < 144:
				l[i] = 8
			case i < 256:
				l[i] = 9
			case i < 280:
				l[i] = 7
			default:
				l[i] = 8
			}
		}
		var d [30]uint8
		for i := range d {
			d[i] = 5
		}
		return fixedLit.build(l[:]) && fixedDist.build(d[:])
	}
}

// put outputs one octet.
func (z *inflater) put(p []byte, n int, c byte) {
	p[n] = c
	z.win[z.wpos] = c
	z.wpos++
	if z.wpos == len(z.win) {
		z.wpos, z.full = 0, true
	}
}

// Read decodes into p. It returns what it has decoded at the end of every
// block and whenever going on would mean waiting for input.
func (z *inflater) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && z.err == nil {
		if z.copyLen > 0 {
			for z.copyLen > 0 && n < len(p) {
				z.put(p, n, z.win[(z.wpos-z.copyDist)&(len(z.win)-1)])
				n++
				z.copyLen--
			}
			continue
		}
		switch z.state {
		case infDone:
			z.err = io.EOF
		case infHeader:
			if n > 0 {
				return n, nil // the end of a block: hand its data over
			}
			z.header()
		case infStored:
			if z.stored == 0 {
				z.state = infHeader
				if z.final {
					z.state = infDone
				}
				continue
			}
			for z.stored > 0 && n < len(p) && z.nbits >= 8 {
				z.put(p, n, byte(z.take(8)))
				n++
				z.stored--
			}
			if z.stored == 0 || n == len(p) {
				continue
			}
			if n > 0 && z.r.Buffered() == 0 {
				return n, nil
			}
			c, err := z.r.ReadByte()
			if err != nil {
				z.err = noEOF(err)
				break
			}
			z.put(p, n, c)
			n++
			z.stored--
		case infHuffman:
			sym := z.decode(&z.lit, n > 0)
			switch {
			case sym == -2:
				return n, nil // nothing more has arrived yet
			case sym < 0:
			case sym < 256:
				z.put(p, n, byte(sym))
				n++
			case sym == 256:
				z.state = infHeader
				if z.final {
					z.state = infDone
				}
			default:
				z.backref(sym)
			}
		}
	}
	if n > 0 {
		return n, nil
	}
	return 0, z.err
}

// backref reads the rest of a length/distance pair (RFC 1951 §3.2.5).
func (z *inflater) backref(sym int) {
	sym -= 257
	if sym >= len(lenBase) {
		z.err = errInflate
		return
	}
	extra, ok := z.getBits(uint(lenExtra[sym]))
	if !ok {
		return
	}
	length := int(lenBase[sym]) + extra
	ds := z.decode(&z.dist, false)
	if ds < 0 {
		return
	}
	if ds >= len(distBase) {
		z.err = errInflate
		return
	}
	if extra, ok = z.getBits(uint(distExtra[ds])); !ok {
		return
	}
	d := int(distBase[ds]) + extra
	if !z.full && d > z.wpos {
		z.err = errInflate // refers to before the start of the stream
		return
	}
	z.copyLen, z.copyDist = length, d
}

// header reads a block header and, for a dynamic block, its code tables.
func (z *inflater) header() {
	h, ok := z.getBits(3)
	if !ok {
		return
	}
	z.final = h&1 == 1
	switch h >> 1 {
	case 0: // stored (RFC 1951 §3.2.4)
		z.take(z.nbits % 8)
		v, ok := z.getBits(16)
		if !ok {
			return
		}
		nv, ok := z.getBits(16)
		if !ok {
			return
		}
		if v != ^nv&0xffff {
			z.err = errInflate
			return
		}
		z.stored, z.state = v, infStored
	case 1: // fixed Huffman codes (§3.2.6)
		z.lit, z.dist, z.state = fixedLit, fixedDist, infHuffman
	case 2: // dynamic Huffman codes (§3.2.7)
		if z.dynamic() {
			z.state = infHuffman
		}
	default:
		z.err = errInflate
	}
}

// dynamic reads the code tables of a dynamic block.
func (z *inflater) dynamic() bool {
	hl, ok := z.getBits(14)
	if !ok {
		return false
	}
	nlen, ndist, ncode := hl&31+257, (hl>>5)&31+1, hl>>10+4
	if nlen > 286 || ndist > 30 {
		z.err = errInflate
		return false
	}
	var lengths [320]uint8
	for i := 0; i < ncode; i++ {
		v, ok := z.getBits(3)
		if !ok {
			return false
		}
		lengths[codeLenOrder[i]] = uint8(v)
	}
	var cl huffman
	if !cl.build(lengths[:19]) {
		z.err = errInflate
		return false
	}
	lengths = [320]uint8{}
	for i := 0; i < nlen+ndist; {
		sym := z.decode(&cl, false)
		if sym < 0 {
			return false
		}
		if sym < 16 {
			lengths[i] = uint8(sym)
			i++
			continue
		}
		var rep int
		var val uint8
		switch sym {
		case 16:
			if i == 0 {
				z.err = errInflate
				return false
			}
			val = lengths[i-1]
			v, ok := z.getBits(2)
			if !ok {
				return false
			}
			rep = 3 + v
		case 17:
			v, ok := z.getBits(3)
			if !ok {
				return false
			}
			rep = 3 + v
		default:
			v, ok := z.getBits(7)
			if !ok {
				return false
			}
			rep = 11 + v
		}
		if i+rep > nlen+ndist {
			z.err = errInflate
			return false
		}
		for ; rep > 0; rep-- {
			lengths[i] = val
			i++
		}
	}
	if lengths[256] == 0 || !z.lit.build(lengths[:nlen]) || !z.dist.build(lengths[nlen:nlen+ndist]) {
		z.err = errInflate // no end-of-block code, or an over-subscribed code
		return false
	}
	return true
}
