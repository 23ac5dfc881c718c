package delivery

import (
	"net/netip"
	"testing"
)

// POSTRIDER_OUTBOUND_IPS: the receiver sees the configured source address
// for its family; a family without one gets the system's choice.
func TestSourceAddress(t *testing.T) {
	w := newWorld(t)
	mx := w.net.addr()
	rcv := startReceiver(t, w.net, mx, nil, false)
	src := w.net.addr() // a loopback address nothing listens on
	w.zone.add(t, "src.test. MX 10 mx.src.test.", "mx.src.test. A "+mx)
	w.enqueue("alice@sender.test", nil, "bob@src.test")
	cfg := w.config()
	cfg.SourceAddrs = []netip.Addr{netip.MustParseAddr("::1"), netip.MustParseAddr(src)}
	w.engine(cfg).RunOnce(bg)
	m := rcv.messages()
	if len(m) != 1 || m[0].Remote != src {
		t.Fatalf("receiver got %+v; want one message from %s", m, src)
	}

	w.enqueue("alice@sender.test", nil, "carol@src.test")
	cfg.SourceAddrs = []netip.Addr{netip.MustParseAddr("::1")} // no IPv4 source: the system's
	w.engine(cfg).RunOnce(bg)
	m = rcv.messages()
	if len(m) != 2 || m[1].Remote == src || m[1].Remote == "" {
		t.Fatalf("without an IPv4 source: receiver got %+v", m)
	}
}
