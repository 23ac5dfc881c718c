package auth

import (
	"context"
	"testing"

	"github.com/postrider/postrider/internal/pgtest"
)

// BenchmarkLoginPostgres is one good login through PostgreSQL from an
// address without failures, throttle bookkeeping included: with cheap hash
// parameters, so that the store round trips dominate, and with the default
// argon2id parameters, which is what a real login costs.
func BenchmarkLoginPostgres(b *testing.B) {
	for _, c := range []struct {
		name   string
		params Argon2Params
	}{
		{"cheap", cheapParams},
		{"argon2default", DefaultArgon2Params},
	} {
		b.Run(c.name, func(b *testing.B) {
			st := pgtest.NewStore(b)
			ctx := context.Background()
			if err := st.CreateDomain(ctx, "example.org"); err != nil {
				b.Fatal(err)
			}
			hash, err := c.params.Hash("right")
			if err != nil {
				b.Fatal(err)
			}
			if _, err := st.CreateAccount(ctx, "alice@example.org", hash); err != nil {
				b.Fatal(err)
			}
			a := New(st, Options{Argon2: c.params, Logger: quiet})
			for b.Loop() {
				if _, err := a.Authenticate(ctx, "alice@example.org", "right", ip1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
