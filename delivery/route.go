package delivery

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"sort"
	"strings"

	"github.com/postrider/postrider/internal/dnsr"
)

const (
	// maxMXHosts bounds the MX hosts tried in one attempt, and maxAddrs
	// the addresses (as Postfix's smtp_mx_address_limit): a domain with
	// many dead hosts costs one attempt a bounded time.
	maxMXHosts = 5
	maxAddrs   = 10
)

// mxHost is one host to try, with its addresses in the order to try them.
type mxHost struct {
	Name  string
	Addrs []netip.Addr
}

// route finds where mail for domain goes (RFC 5321 §5.1): the MX hosts in
// preference order, equal preferences in random order; the domain itself
// when it has no MX record (the implicit MX). It returns a permanent
// failure for a null MX (RFC 7505 §3) or a domain with no host, and a
// temporary one when DNS does not answer: DNS trouble never bounces mail.
func route(ctx context.Context, r *net.Resolver, domain string) ([]mxHost, *result) {
	mxs, err := r.LookupMX(ctx, domain)
	// Go returns the well-formed records with an error when some are
	// malformed: use those.
	if err != nil && len(mxs) == 0 && !dnsr.NotFound(err) {
		return nil, tempResult("4.4.3", "DNS lookup of the MX records of "+domain+" failed: "+errText(err))
	}
	// RFC 7505 §3: a single MX with an empty target (".") says the domain
	// accepts no mail.
	if len(mxs) == 1 && (mxs[0].Host == "." || mxs[0].Host == "") {
		return nil, permResult("5.1.10", "domain "+domain+" accepts no mail (null MX, RFC 7505)")
	}
	var names []string
	if len(mxs) == 0 {
		// RFC 5321 §5.1: no MX records: the domain itself, as if it had
		// one MX of preference 0.
		names = []string{domain}
	} else {
		names = orderMX(mxs)
	}
	var (
		hosts    []mxHost
		tempErr  error
		addrLeft = maxAddrs
	)
	for _, name := range names {
		if len(hosts) == maxMXHosts || addrLeft == 0 {
			break
		}
		if name == "." || name == "" {
			continue // a null MX among others is an error of the domain; skip it
		}
		addrs, err := r.LookupNetIP(ctx, "ip", name)
		if err != nil {
			if !dnsr.NotFound(err) {
				tempErr = err
			}
			continue
		}
		addrs = interleave(addrs)
		if len(addrs) > addrLeft {
			addrs = addrs[:addrLeft]
		}
		addrLeft -= len(addrs)
		hosts = append(hosts, mxHost{Name: name, Addrs: addrs})
	}
	if len(hosts) == 0 {
		if tempErr != nil {
			return nil, tempResult("4.4.3", "DNS lookup of the mail hosts of "+domain+" failed: "+errText(tempErr))
		}
		if len(mxs) == 0 {
			return nil, permResult("5.1.2", "domain "+domain+" has no MX, A or AAAA record")
		}
		return nil, permResult("5.1.2", "no MX host of "+domain+" has an address")
	}
	return hosts, nil
}

// orderMX sorts by preference and shuffles hosts of equal preference
// (RFC 5321 §5.1), dropping the trailing dot and duplicates.
func orderMX(mxs []*net.MX) []string {
	mxs = append([]*net.MX(nil), mxs...)
	rand.Shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	sort.SliceStable(mxs, func(i, j int) bool { return mxs[i].Pref < mxs[j].Pref })
	seen := map[string]bool{}
	var out []string
	for _, m := range mxs {
		h := strings.ToLower(strings.TrimSuffix(m.Host, "."))
		if h == "" {
			h = "."
		}
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out
}

// interleave alternates address families, the first family first (RFC
// 8305 §4), so that a host whose IPv6 is broken is still reached over IPv4
// within the address limit.
func interleave(addrs []netip.Addr) []netip.Addr {
	if len(addrs) == 0 {
		return nil
	}
	var a, b []netip.Addr
	first := addrs[0].Unmap().Is4()
	for _, x := range addrs {
		x = x.Unmap()
		if x.Is4() == first {
			a = append(a, x)
		} else {
			b = append(b, x)
		}
	}
	out := make([]netip.Addr, 0, len(addrs))
	for i := 0; i < len(a) || i < len(b); i++ {
		if i < len(a) {
			out = append(out, a[i])
		}
		if i < len(b) {
			out = append(out, b[i])
		}
	}
	return out
}

func errText(err error) string {
	return cleanField(err.Error())
}
