package smtpd

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// resolveCache keeps successful Resolve results for a few seconds,
// so that a stream of messages to the same users costs one query per
// message (the delivery) rather than two. Only positive results are kept:
// a new account or alias is seen at once; a removed one for at most
// resolveTTL (its delivery then fails in the store and the client gets a
// temporary error). Quotas are not cached: they are read at RCPT when the
// account has a limit, and the store enforces them at delivery.
type resolveCache struct {
	mu sync.Mutex
	m  map[string]resolveEntry
}

type resolveEntry struct {
	res mailstore.Resolution
	exp time.Time
}

const (
	resolveTTL     = 5 * time.Second
	resolveMaxKeys = 10000
)

func (c *resolveCache) resolve(ctx context.Context, st Store, addr string) (mailstore.Resolution, error) {
	key := strings.ToLower(addr)
	now := time.Now()
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && now.Before(e.exp) {
		return e.res, nil
	}
	res, err := st.Resolve(ctx, addr)
	if err != nil {
		return mailstore.Resolution{}, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= resolveMaxKeys {
		c.m = make(map[string]resolveEntry)
	}
	c.m[key] = resolveEntry{res: res, exp: now.Add(resolveTTL)}
	c.mu.Unlock()
	return res, nil
}
