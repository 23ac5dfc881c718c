package smtpd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// resolveCache keeps successful Resolve results for a few seconds,
// so that a stream of messages to the same users costs one query per
// message (the delivery) rather than two. Of the negative results only
// "not one of our domains" is kept, per domain: a submission's
// recipients elsewhere would otherwise cost a query each, for an answer
// that changes only when an operator adds the domain, which is then seen
// at most resolveTTL later (meanwhile submitted mail to it is queued and
// relayed, and port 25 refuses it with a permanent "relay denied" — as
// before the domain was added). A new account or alias is seen at once; a
// removed one for at most resolveTTL (its delivery then fails in the
// store and the client gets a temporary error). Quotas are not cached:
// they are read at RCPT when the account has a limit, and the store
// enforces them at delivery.
type resolveCache struct {
	mu     sync.Mutex
	m      map[string]resolveEntry
	remote map[string]time.Time // domain (lower case) → end of its "not local" entry
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
	domain := key[strings.LastIndexByte(key, '@')+1:]
	now := time.Now()
	c.mu.Lock()
	e, ok := c.m[key]
	remoteUntil, remote := c.remote[domain]
	c.mu.Unlock()
	if ok && now.Before(e.exp) {
		return e.res, nil
	}
	if remote && now.Before(remoteUntil) {
		return mailstore.Resolution{}, fmt.Errorf("resolve %s: %w", addr, mailstore.ErrNotLocalDomain)
	}
	res, err := st.Resolve(ctx, addr)
	if errors.Is(err, mailstore.ErrNotLocalDomain) {
		c.mu.Lock()
		if c.remote == nil || len(c.remote) >= resolveMaxKeys {
			c.remote = make(map[string]time.Time)
		}
		c.remote[domain] = now.Add(resolveTTL)
		c.mu.Unlock()
	}
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
