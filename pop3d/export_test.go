package pop3d

// The read-ahead bounds, for the tests that check them.
const (
	AheadMessages = aheadMessages
	AheadBytes    = aheadBytes
)

// ReadAheadInUse is the octets of read-ahead buffers the server's sessions
// hold.
func (s *Server) ReadAheadInUse() int64 { return s.ahead.used.Load() }
