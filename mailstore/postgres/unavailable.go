package postgres

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// Telling an outage from a bug. mapErr wraps every error that means "the
// database cannot serve us right now" in mailstore.ErrUnavailable, so that
// clients hear "try again later" (IMAP NO [UNAVAILABLE], RFC 5530 §3)
// instead of SERVERBUG, which some clients take as final. Anything else (a
// constraint we did not expect, a type mismatch, SQL syntax) stays an
// internal error.

// errServerClosed replaces io.EOF from a database connection (see
// markEOF): the server or a proxy in between closed it. A bare io.EOF
// could as well come from a client's message body that ended early, which
// is no outage.
var errServerClosed = errors.New("database closed the connection")

// unavailable reports whether err is a temporary unavailability of the
// database rather than a failure of the request itself.
func unavailable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		// Canceled is the caller's doing (client gone, shutdown).
		return false
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		// Refused, reset, timed out, "the database system is starting
		// up", too many clients: no connection, whatever the reason.
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return unavailableCode(pe.Code)
	}
	var ne net.Error
	switch {
	case errors.Is(err, errServerClosed), errors.Is(err, pgconn.ErrConnClosed),
		errors.Is(err, context.DeadlineExceeded), pgconn.Timeout(err),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED),
		errors.As(err, &ne):
		return true
	}
	return false
}

// unavailableCode reports whether a SQLSTATE means the server cannot serve
// the request now (PostgreSQL manual, appendix A).
func unavailableCode(code string) bool {
	switch {
	case strings.HasPrefix(code, "08"): // connection_exception
		return true
	case strings.HasPrefix(code, "53"): // insufficient_resources (disk full, out of memory, too many connections)
		return true
	}
	switch code {
	case "57P01", "57P02", "57P03": // admin_shutdown, crash_shutdown, cannot_connect_now
		return true
	case "40001", "40P01": // serialization_failure, deadlock_detected: still failing after our retries
		return true
	case "25006": // read_only_sql_transaction: a standby after a failover, until the primary is back
		return true
	}
	return false
}

// markEOF wraps a DialFunc so that the end of a database connection reads
// as errServerClosed (see there). It wraps the TCP connection, under TLS, so
// that pgx still sees the *tls.Conn it needs for SCRAM channel binding.
func markEOF(dial pgconn.DialFunc) pgconn.DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return eofConn{c}, nil
	}
}

type eofConn struct{ net.Conn }

func (c eofConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err == io.EOF {
		// Not wrapped: pgx turns a bare io.EOF into io.ErrUnexpectedEOF.
		err = errServerClosed
	}
	return n, err
}
