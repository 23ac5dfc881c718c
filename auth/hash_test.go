package auth

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// cheapParams keeps tests fast; production uses DefaultArgon2Params.
var cheapParams = Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 32}

func TestHashPasswordDefaultFormat(t *testing.T) {
	h, err := HashPassword("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^\{ARGON2ID\}\$argon2id\$v=19\$m=32768,t=3,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
	if !re.MatchString(h) {
		t.Fatalf("hash %q does not match the Dovecot argon2id format", h)
	}
	ok, rehash, err := VerifyPassword(h, "correct horse battery staple")
	if !ok || rehash || err != nil {
		t.Fatalf("VerifyPassword(own hash) = %v, %v, %v; want true, false, nil", ok, rehash, err)
	}
	ok, _, err = VerifyPassword(h, "correct horse battery stapler")
	if ok || err != nil {
		t.Fatalf("wrong password: ok=%v err=%v", ok, err)
	}
	h2, _ := HashPassword("correct horse battery staple")
	if h2 == h {
		t.Fatal("two hashes of one password are equal: salt not random")
	}
}

func TestHashRoundTripAndRehash(t *testing.T) {
	h, err := cheapParams.Hash("pässwörd")
	if err != nil {
		t.Fatal(err)
	}
	if ok, rehash, err := cheapParams.Verify(h, "pässwörd"); !ok || rehash || err != nil {
		t.Fatalf("Verify = %v, %v, %v", ok, rehash, err)
	}
	for _, other := range []Argon2Params{
		{Time: 2, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 32},
		{Time: 1, MemoryKiB: 128, Threads: 1, SaltLen: 16, KeyLen: 32},
		{Time: 1, MemoryKiB: 64, Threads: 2, SaltLen: 16, KeyLen: 32},
		{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 64},
		DefaultArgon2Params,
	} {
		ok, rehash, err := other.Verify(h, "pässwörd")
		if !ok || !rehash || err != nil {
			t.Errorf("params %+v: Verify = %v, %v, %v; want a match that needs rehash", other, ok, rehash, err)
		}
		// A mismatch never asks for a rehash.
		if ok, rehash, _ := other.Verify(h, "password"); ok || rehash {
			t.Errorf("params %+v: wrong password gave ok=%v rehash=%v", other, ok, rehash)
		}
	}
}

func TestHashRefusals(t *testing.T) {
	if _, err := HashPassword(""); !errors.Is(err, ErrEmptyPassword) {
		t.Errorf("empty: %v", err)
	}
	if _, err := HashPassword(strings.Repeat("x", MaxPasswordLength+1)); !errors.Is(err, ErrPasswordTooLong) {
		t.Errorf("long: %v", err)
	}
	if _, err := (Argon2Params{Time: 1, MemoryKiB: 4, Threads: 1, SaltLen: 16, KeyLen: 32}).Hash("x"); err == nil {
		t.Error("invalid parameters accepted")
	}
	// A password of exactly the limit hashes and verifies; one more octet
	// never matches.
	long := strings.Repeat("y", MaxPasswordLength)
	h, err := cheapParams.Hash(long)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := cheapParams.Verify(h, long); !ok {
		t.Error("password of MaxPasswordLength does not verify")
	}
	if ok, _, _ := cheapParams.Verify(h, long+"y"); ok {
		t.Error("over-long password verified")
	}
}

// Reference vectors of the Argon2 reference implementation
// (phc-winner-argon2 src/test.c), password "password", salt "somesalt",
// written in Dovecot's format.
func TestVerifyArgon2Vectors(t *testing.T) {
	cases := []struct {
		hash, password string
		rehash         bool
	}{
		{"{ARGON2ID}$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4", "password", true},
		{"{ARGON2ID}$argon2id$v=19$m=256,t=2,p=2$c29tZXNhbHQ$bQk8UB/VmZZF4Oo79iDXuL5/0ttZwg2f/5U52iv1cDc", "password", true},
		{"{ARGON2ID}$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc", "password", true},
		{"$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4", "password", true},
		{"{argon2id}$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4", "password", true},
		{"{ARGON2I}$argon2i$v=19$m=256,t=2,p=1$c29tZXNhbHQ$iekCn0Y3spW+sCcFanM2xBT63UP2sghkUoHLIUpWRS8", "password", true},
		{"$argon2i$v=19$m=256,t=2,p=2$c29tZXNhbHQ$T/XOJ2mh1/TIpJHfCdQan76Q5esCFVoT5MAeIM1Oq2E", "password", true},
	}
	for _, c := range cases {
		ok, rehash, err := cheapParams.Verify(c.hash, c.password)
		if !ok || rehash != c.rehash || err != nil {
			t.Errorf("Verify(%s) = %v, %v, %v", c.hash, ok, rehash, err)
		}
		if ok, _, err := cheapParams.Verify(c.hash, "passwore"); ok || err != nil {
			t.Errorf("Verify(%s, wrong) = %v, %v", c.hash, ok, err)
		}
	}
	// The same vector with the current parameters needs no rehash.
	p := Argon2Params{Time: 2, MemoryKiB: 256, Threads: 1, SaltLen: 8, KeyLen: 32}
	if ok, rehash, _ := p.Verify(cases[0].hash, "password"); !ok || rehash {
		t.Errorf("current params: ok=%v rehash=%v", ok, rehash)
	}
}

// Test vectors from Drepper's "Unix crypt using SHA-256 and SHA-512".
var shaCryptSpecVectors = []struct{ setting, password, want string }{
	{"$5$saltstring", "Hello world!", "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"},
	{"$5$rounds=10000$saltstringsaltstring", "Hello world!", "$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA"},
	{"$5$rounds=5000$toolongsaltstring", "This is just a test", "$5$rounds=5000$toolongsaltstrin$Un/5jzAHMgOGZ5.mWJpuVolil07guHPvOW8mGRcvxa5"},
	{"$5$rounds=1400$anotherlongsaltstring", "a very much longer text to encrypt.  This one even stretches over morethan one line.", "$5$rounds=1400$anotherlongsalts$Rx.j8H.h8HjEDGomFU8bDkXm3XIUnzyxf12oP84Bnq1"},
	{"$5$rounds=77777$short", "we have a short salt string but not a short password", "$5$rounds=77777$short$JiO1O3ZpDAxGJeaDIuqCoEFysAe1mZNJRs3pw0KQRd/"},
	{"$5$rounds=123456$asaltof16chars..", "a short string", "$5$rounds=123456$asaltof16chars..$gP3VQ/6X7UUEW3HkBn2w1/Ptq2jxPyzV/cZKmF/wJvD"},
	{"$5$rounds=10$roundstoolow", "the minimum number is still observed", "$5$rounds=1000$roundstoolow$yfvwcWrQ8l/K0DAWyuPMDNHpIVlTQebY9l/gL972bIC"},
	{"$6$saltstring", "Hello world!", "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"},
	{"$6$rounds=10000$saltstringsaltstring", "Hello world!", "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."},
	{"$6$rounds=5000$toolongsaltstring", "This is just a test", "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0"},
	{"$6$rounds=1400$anotherlongsaltstring", "a very much longer text to encrypt.  This one even stretches over morethan one line.", "$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1"},
	{"$6$rounds=77777$short", "we have a short salt string but not a short password", "$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0"},
	{"$6$rounds=123456$asaltof16chars..", "a short string", "$6$rounds=123456$asaltof16chars..$BtCwjqMJGx5hrJhZywWvt0RLE8uZ4oPwcelCjmw2kSYu.Ec6ycULevoBK25fs2xXgMNrCzIMVcgEJAstJeonj1"},
	{"$6$rounds=10$roundstoolow", "the minimum number is still observed", "$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX."},
}

// Further vectors made with OpenSSL 3.0 ("openssl passwd -5/-6 -salt"), an
// independent implementation: multi-block passwords, a 1-character salt, a
// 16-character salt, a non-ASCII password.
var shaCryptOpenSSLVectors = []struct{ password, hash string }{
	{strings.Repeat("Ünïcødé-passwörd-", 8), "$6$Pz8.Qw/x$4MfK58MWXFRLuIZTJGpWARc8Ue0gblpVuotypikBXKcPuzZNpkkTehW/z0DBvy06LKV7VS/vFM6nTuHkINW5n/"},
	{strings.Repeat("Ünïcødé-passwörd-", 8), "$5$Pz8.Qw/x$HfEWPKzk/q2l3imLrX7w6.BNsNDaZpFJT6U2Jry/vt9"},
	{"p", "$6$a$2.GZ8yudlr5SHiCPkX5N4O16VrDiQ2OZrbwWIoAlxZVHQFGoqZP6JY4XB1c.jTYlVXS7wOdfIg7aItV3orkit0"},
	{strings.Repeat("x", 64), "$5$exactly16charsXY$J4ZsAMROKV4.mXb3nM9bz/DRfKj8efTcRR9OrkGOC40"},
	{strings.Repeat("x", 64), "$6$exactly16charsXY$9FE5v1YTKJqGlykGPc26tsqiV6lPmS1h1Duwh8gxAhbCd39ks.wygwPd0WuW8E5Ef0gyhzZM.vrEP4q3rJsAc/"},
	{"x", "$6$rounds=1400$anotherlongsalts$yowt8ImfON.IERiLD9GFt0oQJvGF.B8RmCDiZqVTj/hHbJUIqC96I4V6uSKfjaRiuGZtMlDQ9TmFXN3udv17l0"},
}

func TestSHACryptSpecVectors(t *testing.T) {
	for _, v := range shaCryptSpecVectors {
		got, err := shaCryptString(v.setting, v.password)
		if err != nil || got != v.want {
			t.Errorf("crypt(%q, %q)\n got %s (%v)\nwant %s", v.password, v.setting, got, err, v.want)
		}
	}
}

func TestVerifySHACrypt(t *testing.T) {
	type vec struct{ password, hash string }
	var all []vec
	for _, v := range shaCryptSpecVectors {
		all = append(all, vec{v.password, v.want})
	}
	for _, v := range shaCryptOpenSSLVectors {
		all = append(all, vec{v.password, v.hash})
	}
	for _, v := range all {
		scheme := "{SHA512-CRYPT}"
		if strings.HasPrefix(v.hash, "$5$") {
			scheme = "{SHA256-CRYPT}"
		}
		for _, stored := range []string{scheme + v.hash, v.hash, "{CRYPT}" + v.hash} {
			ok, rehash, err := VerifyPassword(stored, v.password)
			if !ok || !rehash || err != nil {
				t.Errorf("VerifyPassword(%s) = %v, %v, %v; want a match needing rehash", stored, ok, rehash, err)
			}
		}
		if ok, _, err := VerifyPassword(scheme+v.hash, v.password+"!"); ok || err != nil {
			t.Errorf("wrong password verified against %s (err %v)", v.hash, err)
		}
	}
	// The setting as stored with the original, longer salt also verifies
	// (the salt is cut to 16 characters, as crypt(3) does).
	long := "$6$rounds=1400$anotherlongsaltstring$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1"
	if ok, _, err := VerifyPassword(long, "a very much longer text to encrypt.  This one even stretches over morethan one line."); !ok || err != nil {
		t.Errorf("long-salt form: ok=%v err=%v", ok, err)
	}
}

func TestVerifyBcrypt(t *testing.T) {
	h, err := bcrypt.GenerateFromPassword([]byte("s3cret pässword"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	body := string(h[4:]) // after "$2a$"
	for _, stored := range []string{
		"{BLF-CRYPT}$2a$" + body, "{BLF-CRYPT}$2b$" + body, "{BLF-CRYPT}$2y$" + body,
		"$2y$" + body, "$2b$" + body, "{CRYPT}$2y$" + body,
	} {
		ok, rehash, err := VerifyPassword(stored, "s3cret pässword")
		if !ok || !rehash || err != nil {
			t.Errorf("VerifyPassword(%s) = %v, %v, %v", stored, ok, rehash, err)
		}
		if ok, _, err := VerifyPassword(stored, "s3cret password"); ok || err != nil {
			t.Errorf("wrong password: ok=%v err=%v", ok, err)
		}
	}
	// OpenBSD / John the Ripper bcrypt vector.
	for _, stored := range []string{
		"{BLF-CRYPT}$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
		"{BLF-CRYPT}$2y$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
	} {
		if ok, _, err := VerifyPassword(stored, "U*U"); !ok || err != nil {
			t.Errorf("VerifyPassword(%s, U*U) = %v, %v", stored, ok, err)
		}
	}
	// Costs above the limit are refused, not computed.
	huge := "$2y$31$" + body[3:]
	if ok, _, err := VerifyPassword(huge, "s3cret pässword"); ok || !errors.Is(err, ErrMalformedHash) {
		t.Errorf("cost 31: ok=%v err=%v", ok, err)
	}
}

func TestVerifyUnknownAndMalformed(t *testing.T) {
	cases := []struct {
		stored string
		want   error
	}{
		{"{PLAIN}secret", ErrUnknownScheme},
		{"{MD5-CRYPT}$1$abc$def", ErrUnknownScheme},
		{"$1$saltsalt$hash", ErrUnknownScheme},
		{"{CRYPT}$1$saltsalt$hash", ErrUnknownScheme},
		{"plaintext", ErrUnknownScheme},
		{"", ErrUnknownScheme},
		{"{SHA512-CRYPT", ErrMalformedHash},
		{"{SHA512-CRYPT}$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5", ErrMalformedHash},
		{"{ARGON2ID}$argon2i$v=19$m=256,t=2,p=1$c29tZXNhbHQ$iekCn0Y3spW+sCcFanM2xBT63UP2sghkUoHLIUpWRS8", ErrMalformedHash},
		{"$argon2id$v=16$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4", ErrMalformedHash},
		{"$argon2id$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4", ErrMalformedHash},
		{"$argon2id$v=19$t=2,m=256,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4", ErrMalformedHash},
		{"$argon2id$v=19$m=4194304,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4", ErrMalformedHash},
		{"$argon2id$v=19$m=256,t=0,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4", ErrMalformedHash},
		{"$argon2id$v=19$m=256,t=2,p=0$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4", ErrMalformedHash},
		{"$argon2id$v=19$m=256,t=2,p=1$c29tZ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4", ErrMalformedHash},
		{"$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$!!", ErrMalformedHash},
		{"$6$rounds=abc$salt$" + strings.Repeat("a", 86), ErrMalformedHash},
		{"$6$rounds=$salt$" + strings.Repeat("a", 86), ErrMalformedHash},
		{"$6$salt$short", ErrMalformedHash},
		{"$6$salt$" + strings.Repeat("*", 86), ErrMalformedHash},
		{"$6$salt$" + strings.Repeat("a", 86) + "$x", ErrMalformedHash},
		{"$6$rounds=999999999$salt$" + strings.Repeat("a", 86), ErrMalformedHash}, // over the verification limit
		{"$2y$05$short", ErrMalformedHash},
	}
	for _, c := range cases {
		ok, rehash, err := VerifyPassword(c.stored, "password")
		if ok || rehash || !errors.Is(err, c.want) {
			t.Errorf("VerifyPassword(%q) = %v, %v, %v; want %v", c.stored, ok, rehash, err, c.want)
		}
		if err != nil && len(c.stored) > 12 && strings.Contains(err.Error(), c.stored[len(c.stored)-12:]) {
			t.Errorf("error %q leaks the hash", err)
		}
	}
}

// FuzzParseHash checks that no stored hash makes the parsers panic, and that
// what they accept stays within the verification bounds (without computing
// any hash, which could be slow for fuzzed parameters).
func FuzzParseHash(f *testing.F) {
	for _, v := range shaCryptSpecVectors {
		f.Add(v.want)
		f.Add("{SHA512-CRYPT}" + v.setting)
	}
	f.Add("{ARGON2ID}$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc")
	f.Add("$argon2i$v=19$m=256,t=2,p=2$c29tZXNhbHQ$T/XOJ2mh1/TIpJHfCdQan76Q5esCFVoT5MAeIM1Oq2E")
	f.Add("{BLF-CRYPT}$2y$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW")
	f.Add("{PLAIN}x")
	f.Add("{")
	f.Fuzz(func(t *testing.T, stored string) {
		scheme, body, err := identify(stored)
		if err != nil {
			return
		}
		switch scheme {
		case schemeArgon2ID, schemeArgon2I:
			h, err := parseArgon2(body)
			if err == nil && (h.memory > maxArgon2MemoryKiB || h.time > maxArgon2Time || h.threads < 1 ||
				len(h.salt) < 8 || len(h.key) < 16) {
				t.Fatalf("out-of-bounds argon2 hash accepted: %+v", h)
			}
		case schemeSHA512, schemeSHA256:
			h, err := parseSHACrypt(body)
			if err == nil && (h.rounds < shaCryptRoundsMin || h.rounds > shaCryptRoundsMax || len(h.salt) > shaCryptSaltMax) {
				t.Fatalf("out-of-bounds SHA-crypt hash accepted: %+v", h)
			}
		case schemeBcrypt:
			_, _ = bcrypt.Cost([]byte(body))
		default:
			t.Fatalf("identify returned unknown scheme %q", scheme)
		}
	})
}
