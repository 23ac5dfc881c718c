package pop3d

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Command is one parsed POP3 command line.
//
// RFC 1939 §3 and RFC 2449 §3: a command is a case-insensitive keyword of
// three or four characters, optionally followed by arguments separated by a
// single space; each argument is at most 40 characters (RFC 1939 §3), the
// whole line at most 255 octets with its CRLF (RFC 2449 §4).
type Command struct {
	// Name is the keyword in upper case.
	Name string
	// Args are the space-separated arguments (runs of spaces are tolerated).
	Args []string
	// Rest is everything after the keyword and its one separating space,
	// unchanged: PASS takes its argument from here, because RFC 1939 §7
	// lets a password contain spaces.
	Rest string
}

// Parse errors. Before login a line that fails to parse is treated as
// garbage and ends the connection.
var (
	ErrEmptyLine   = errors.New("empty command line")
	ErrBadKeyword  = errors.New("command keyword must be 3 or 4 letters")
	ErrBadChar     = errors.New("command line contains control characters or invalid UTF-8")
	ErrLineTooLong = errors.New("command line longer than 255 octets")
	ErrTooMany     = errors.New("too many command arguments")
)

// MaxArgs bounds the number of arguments of any command (the longest
// standard form is "TOP msg n"; AUTH takes a mechanism and a response).
const MaxArgs = 4

// ParseCommand parses one command line without its line ending. It never
// allocates more than the line's size and accepts any input without
// panicking (see FuzzParseCommand).
func ParseCommand(line string) (Command, error) {
	var cmd Command
	var args [MaxArgs]string
	err := parseCommand(line, &cmd, &args)
	if len(cmd.Args) > 0 {
		cmd.Args = append([]string(nil), cmd.Args...)
	}
	return cmd, err
}

// parseCommand parses line into cmd, whose Args use the storage of args:
// the session parses every command into the same two (no allocation per
// command in a pipelined download).
func parseCommand(line string, cmd *Command, args *[MaxArgs]string) error {
	*cmd = Command{}
	if len(line) == 0 {
		return ErrEmptyLine
	}
	if len(line) > MaxLineLength-2 {
		return ErrLineTooLong
	}
	// Control characters (including NUL, CR, LF, TAB and DEL) never belong
	// in a command line; UTF-8 is allowed in arguments (RFC 6856 §2,
	// usernames and passwords), other 8-bit data is not.
	for i := 0; i < len(line); i++ {
		if c := line[i]; c < 0x20 || c == 0x7f {
			return ErrBadChar
		}
	}
	if !utf8.ValidString(line) {
		return ErrBadChar
	}
	kw, rest, hasRest := strings.Cut(line, " ")
	if len(kw) < 3 || len(kw) > 4 {
		return ErrBadKeyword
	}
	for i := 0; i < len(kw); i++ {
		c := kw[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' && i > 0) {
			return ErrBadKeyword
		}
	}
	name := strings.ToUpper(kw)
	if !hasRest {
		cmd.Name = name
		return nil
	}
	a := args[:0]
	for f := range strings.SplitSeq(rest, " ") {
		if f == "" {
			continue
		}
		if len(a) == MaxArgs {
			// Only PASS may have more "words" than that, and it uses Rest.
			if name == "PASS" {
				break
			}
			return ErrTooMany
		}
		a = append(a, f)
	}
	cmd.Name, cmd.Rest = name, rest
	if len(a) > 0 {
		cmd.Args = a
	}
	return nil
}

// parseMsgNum parses a message-number argument (RFC 1939 §3: a decimal
// number starting at 1; leading zeros and signs are not numbers there).
func parseMsgNum(s string) (int, bool) {
	if s == "" || len(s) > 9 || s[0] == '0' {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 || strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return 0, false
	}
	return n, true
}

// parseLineCount parses the TOP line count (RFC 1939 §7: a non-negative
// number). Values beyond int64 range are clamped: they mean "everything".
func parseLineCount(s string) (int64, bool) {
	if s == "" || len(s) > 40 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		// All digits, so only overflow is possible.
		return 1<<63 - 1, true
	}
	return n, true
}
