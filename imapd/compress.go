package imapd

import (
	"bufio"
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"strings"
	"sync"

	"github.com/postrider/postrider/mailstore"
)

// COMPRESS=DEFLATE (RFC 4978): after the tagged OK, both directions are raw
// DEFLATE (RFC 1951) streams.
//
// Layering. The compressed streams run over c.nc, which is the TLS
// connection when TLS is on, so compression sits above TLS (RFC 4978 §3).
// COMPRESS is an authenticated-state command (RFC 4978 §5, command-auth)
// and STARTTLS a not-authenticated one, so TLS can never start inside a
// compressed stream.
//
// Output. A flate.Writer costs about 0.8 MB at any level (1.2 MB at
// BestSpeed; measured with runtime.MemStats, go1.25): held per
// connection, 10,000 idle compressed sessions would hold 8 to 12 GB.
// Instead the writer is pooled like the output buffer (writer.go): taken
// when a response burst starts, sync-flushed when the connection writer
// flushes, reset and given back when the session waits for the client. A
// reset writer starts with an empty history, which is valid DEFLATE: a
// block need not refer to earlier ones, and a sync flush leaves the stream
// on a byte boundary with no block open. The cost is the history across
// bursts and a reset per burst: a reset, a small response and a flush
// take ~11 µs at BestSpeed against ~42 µs at the default level, which
// clears its 512 KB hash table on every reset. BestSpeed's output is about
// 12% larger on text (README.md: 46% of the original against 41%); the
// CPU saved on every response of every session is worth more.
//
// Input. The inflater (inflate.go, which says why it is our own) must
// persist: the client's stream refers back up to 32 KB. It costs that
// window and two code tables per compressed connection, plus its input
// buffer: TestCompressMemory measures 41 KB more per idle session than
// without COMPRESS (54 KB against 13 KB, stacks included). Every limit of the parser (line length, literal sizes, literal count)
// applies to the decompressed octets, so a decompression bomb meets the
// same limits as plain input (BYE [TOOBIG]) and memory never grows with it.
// Corrupt input ends the session with a BYE.
//
// IDLE. The inflater keeps the first error of its source for good, so
// the reader under it must not return the wake-up that IDLE uses to send
// updates (errWoken): on a compressed connection IDLE sends them from
// within the read instead (conn.onWake), and goes on waiting.

// deflateLevel is the compression level of the server's output.
const deflateLevel = flate.BestSpeed

// inflateBufSize is the input buffer of the inflater (compressed octets).
const inflateBufSize = 2048

// codeCompressionActive: COMPRESS when compression is already on (RFC
// 4978 §3).
const codeCompressionActive = "COMPRESSIONACTIVE"

var deflatePool = sync.Pool{New: func() any {
	w, err := flate.NewWriter(io.Discard, deflateLevel)
	if err != nil {
		panic(err) // only for an invalid level
	}
	return w
}}

// COMPRESS (RFC 4978 §3).
func cmdCompress(c *conn, cx *cmdCtx) error {
	if err := c.p.sp(); err != nil {
		return err
	}
	alg, err := c.p.atom()
	if err != nil {
		return err
	}
	if err := c.p.end(); err != nil {
		return err
	}
	if !strings.EqualFold(alg, "DEFLATE") {
		return errBad("Unknown compression mechanism")
	}
	if c.w.deflate {
		return errNo(codeCompressionActive, "DEFLATE is already active")
	}
	// RFC 4978 §3: the server compresses from right after the CRLF of the
	// tagged OK, which itself goes out uncompressed.
	c.w.str(cx.tag + " OK DEFLATE active\r\n")
	if err := c.w.release(); err != nil {
		return errClosed
	}
	c.startInflate()
	c.w.deflate = true
	c.log.Debug("compression active", "alg", "DEFLATE")
	return errAnswered
}

// startInflate puts the inflater between the connection and c.br. The
// client must wait for the OK before compressing (RFC 4978 §3); octets it
// sent before that anyway are already compressed and go first.
func (c *conn) startInflate() {
	var src io.Reader = connReader{c}
	if n := c.br.Buffered(); n > 0 {
		pending := make([]byte, n)
		_, _ = io.ReadFull(c.br, pending)
		src = io.MultiReader(bytes.NewReader(pending), src)
	}
	c.br.Reset(newInflater(bufio.NewReaderSize(src, inflateBufSize)))
}

// inflateError turns a failure of the compressed input into the BYE the
// client gets, or returns nil for other errors.
func inflateError(err error) *protoError {
	if errors.Is(err, errInflate) {
		return &protoError{statusBYE, "", "Invalid compressed data"}
	}
	return nil
}

// idleWake is conn.onWake in IDLE on a compressed connection: the updates
// IDLE's loop sends after a wake-up, sent from within the read. An error
// ends the session (the inflater cannot be resumed after it).
func (c *conn) idleWake() error {
	if err := c.refreshView(); err != nil {
		if errors.Is(err, mailstore.ErrNoSuchMailbox) {
			return errBye(codeNonexistent, "Selected mailbox was deleted; closing")
		}
		if pe := storeError(err); pe != nil && pe.status == statusBYE {
			return pe
		}
		c.log.Error("catching up in IDLE failed", "err", err)
		return errBye(codeUnavailable, "Internal server error, try again later")
	}
	c.sendExpunges(true)
	if err := c.w.release(); err != nil {
		return errClosed
	}
	return nil
}
