package auth

import (
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// SHA-crypt ($5$ SHA-256, $6$ SHA-512), as specified by Ulrich Drepper in
// "Unix crypt using SHA-256 and SHA-512" (akkadia.org/drepper/SHA-crypt.txt),
// the algorithm of glibc's crypt(3) and Dovecot's SHA256-CRYPT and
// SHA512-CRYPT schemes. Postrider only verifies these hashes (imported from
// other servers) and replaces them with argon2id at the next login.

const (
	shaCryptRoundsDefault = 5000      // when no rounds= is given
	shaCryptRoundsMin     = 1000      // smaller values are raised to this
	shaCryptRoundsMax     = 999999999 // larger values are lowered to this
	shaCryptSaltMax       = 16        // salt characters used; the rest is ignored
)

// shaCryptHash is a parsed "$5$[rounds=N$]salt[$checksum]".
type shaCryptHash struct {
	sha512       bool
	rounds       int  // clamped to [shaCryptRoundsMin, shaCryptRoundsMax]
	customRounds bool // rounds= was present
	salt         string
	sum          string // the encoded checksum as stored ("" in a setting)
}

// parseSHACrypt parses a SHA-crypt hash or setting. Unlike glibc, which
// treats a malformed "rounds=" as part of the salt, it rejects it: no real
// hash contains one.
func parseSHACrypt(s string) (shaCryptHash, error) {
	var h shaCryptHash
	bad := func(what string) (shaCryptHash, error) {
		return shaCryptHash{}, fmt.Errorf("%w: SHA-crypt %s", ErrMalformedHash, what)
	}
	switch {
	case strings.HasPrefix(s, "$5$"):
	case strings.HasPrefix(s, "$6$"):
		h.sha512 = true
	default:
		return bad("prefix")
	}
	s = s[3:]
	h.rounds = shaCryptRoundsDefault
	if rest, found := strings.CutPrefix(s, "rounds="); found {
		end := strings.IndexByte(rest, '$')
		if end <= 0 || end > 10 {
			return bad("rounds")
		}
		n, err := strconv.ParseUint(rest[:end], 10, 64)
		if err != nil {
			return bad("rounds")
		}
		h.rounds = int(min(max(n, shaCryptRoundsMin), shaCryptRoundsMax))
		h.customRounds = true
		s = rest[end+1:]
	}
	salt, sum, _ := strings.Cut(s, "$")
	if strings.IndexByte(sum, '$') >= 0 {
		return bad("field count")
	}
	if len(salt) > shaCryptSaltMax {
		salt = salt[:shaCryptSaltMax]
	}
	want := 43
	if h.sha512 {
		want = 86
	}
	if sum != "" && len(sum) != want {
		return bad("checksum length")
	}
	for i := 0; i < len(sum); i++ {
		if strings.IndexByte(cryptB64, sum[i]) < 0 {
			return bad("checksum character")
		}
	}
	h.salt, h.sum = salt, sum
	return h, nil
}

// shaCryptChecksum returns the encoded checksum of password under the
// setting h (steps 1–21 and the encoding of step 22 of the specification).
func shaCryptChecksum(h shaCryptHash, password string) string {
	newHash := sha256.New
	if h.sha512 {
		newHash = sha512.New
	}
	sum := shaCryptSum(newHash, []byte(password), []byte(h.salt), h.rounds)
	return shaCryptEncode(sum)
}

// shaCryptString formats the full hash of password under setting, as
// crypt(3) would: "$6$rounds=N$salt$checksum" (rounds= only when the setting
// had it).
func shaCryptString(setting, password string) (string, error) {
	h, err := parseSHACrypt(setting)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if h.sha512 {
		b.WriteString("$6$")
	} else {
		b.WriteString("$5$")
	}
	if h.customRounds {
		fmt.Fprintf(&b, "rounds=%d$", h.rounds)
	}
	b.WriteString(h.salt)
	b.WriteByte('$')
	b.WriteString(shaCryptChecksum(h, password))
	return b.String(), nil
}

// shaCryptSum computes the final digest C of the specification.
func shaCryptSum(newHash func() hash.Hash, key, salt []byte, rounds int) []byte {
	// Steps 4–8: digest B = H(key salt key).
	b := newHash()
	b.Write(key)
	b.Write(salt)
	b.Write(key)
	sumB := b.Sum(nil)

	// Steps 1–3: digest A starts with key and salt.
	a := newHash()
	a.Write(key)
	a.Write(salt)
	// Steps 9–10: as many octets of B as the key has.
	a.Write(repeatTo(sumB, len(key)))
	// Step 11: for each bit of the key length, lowest first, B if set, the
	// key if not.
	for n := len(key); n > 0; n >>= 1 {
		if n&1 != 0 {
			a.Write(sumB)
		} else {
			a.Write(key)
		}
	}
	// Step 12.
	sumA := a.Sum(nil)

	// Steps 13–16: P = H(key repeated len(key) times), stretched to len(key).
	dp := newHash()
	for range len(key) {
		dp.Write(key)
	}
	p := repeatTo(dp.Sum(nil), len(key))

	// Steps 17–20: S = H(salt repeated 16+A[0] times), stretched to
	// len(salt).
	ds := newHash()
	for range 16 + int(sumA[0]) {
		ds.Write(salt)
	}
	s := repeatTo(ds.Sum(nil), len(salt))

	// Step 21: the rounds.
	c := sumA
	var cbuf [sha512.Size]byte // c is written into r before r.Sum overwrites it
	r := newHash()
	for i := range rounds {
		r.Reset()
		if i&1 != 0 {
			r.Write(p)
		} else {
			r.Write(c)
		}
		if i%3 != 0 {
			r.Write(s)
		}
		if i%7 != 0 {
			r.Write(p)
		}
		if i&1 != 0 {
			r.Write(c)
		} else {
			r.Write(p)
		}
		c = r.Sum(cbuf[:0])
	}
	return c
}

// repeatTo returns n octets made of copies of d.
func repeatTo(d []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out)+len(d) <= n {
		out = append(out, d...)
	}
	return append(out, d[:n-len(out)]...)
}

// cryptB64 is crypt(3)'s base64 alphabet.
const cryptB64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// shaCryptEncode encodes the final digest with the byte order of step 22.
func shaCryptEncode(c []byte) string {
	var b strings.Builder
	put := func(b2, b1, b0 byte, n int) {
		w := uint32(b2)<<16 | uint32(b1)<<8 | uint32(b0)
		for range n {
			b.WriteByte(cryptB64[w&0x3f])
			w >>= 6
		}
	}
	if len(c) == sha512.Size {
		// Groups (0,21,42), (22,43,1), (44,2,23), … then 63 alone.
		for i := range 21 {
			x, y, z := c[i], c[i+21], c[i+42]
			switch i % 3 {
			case 0:
				put(x, y, z, 4)
			case 1:
				put(y, z, x, 4)
			default:
				put(z, x, y, 4)
			}
		}
		put(0, 0, c[63], 2)
		return b.String()
	}
	// SHA-256: groups (0,10,20), (21,1,11), (12,22,2), … then (0,31,30).
	for i := range 10 {
		x, y, z := c[i], c[i+10], c[i+20]
		switch i % 3 {
		case 0:
			put(x, y, z, 4)
		case 1:
			put(z, x, y, 4)
		default:
			put(y, z, x, 4)
		}
	}
	put(0, c[31], c[30], 3)
	return b.String()
}
