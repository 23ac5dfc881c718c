package pop3d

// The read-ahead bounds, for the tests that check them.
const (
	AheadMessages = aheadMessages
	AheadBytes    = aheadBytes
)
