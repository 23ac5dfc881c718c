// Package zonerecords writes the DNS records a local domain needs (MX, SPF,
// DKIM, DMARC, MTA-STS, TLS-RPT and the client-discovery SRV records) in
// zone-file syntax, and serves the domain's MTA-STS policy.
package zonerecords

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/postrider/postrider/internal/dkimkeys"
	"github.com/postrider/postrider/mailauth"
	"github.com/postrider/postrider/mailstore"
)

// TTL is the time to live of every record written: an hour, short enough
// for a mistake to be corrected the same day, long enough not to matter
// to resolvers.
const TTL = 3600

// Service is one client service for the SRV records.
type Service struct {
	// Name is the SRV service label without its underscore, e.g.
	// "submission".
	Name string
	// Port is the port clients use; 0 when the service is disabled.
	Port int
	// Priority orders services of one kind: lower is preferred (RFC 6186
	// §3.4 lets a domain say which it prefers, e.g. IMAP over POP3).
	Priority int
}

// Params is what the records of one domain are made of.
type Params struct {
	Domain   string // the local domain, A-label, lower case
	Hostname string // POSTRIDER_HOSTNAME: the MX host and the services' target
	// RelayHost is POSTRIDER_RELAY_HOST ("host:port", "" for none):
	// outbound mail leaves through it, so SPF must allow it.
	RelayHost string
	Policy    Policy
	Keys      []mailstore.DKIMKey // the domain's DKIM keys, active and retired
	Services  []Service
	// Now is the moment whose key states (signing, published, superseded)
	// the DKIM comments describe.
	Now time.Time
}

// CheckHostname refuses a POSTRIDER_HOSTNAME that cannot be the target of
// an MX or SRV record: it must be a domain name (RFC 5321 §5.1 looks it up
// for A/AAAA; an address literal is not allowed) with at least two labels.
func CheckHostname(h string) error {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if _, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return fmt.Errorf("POSTRIDER_HOSTNAME %q is an address: MX and SRV records need the mail server's domain name", h)
	}
	if !validDomain(h) {
		return fmt.Errorf("POSTRIDER_HOSTNAME %q is not a fully qualified domain name: set it to the public name of the mail server (e.g. mail.example.org)", h)
	}
	return nil
}

// Write returns the zone-file text of every record the domain needs, each
// kind preceded by one-line comments that say what it is for. Names are
// absolute, so the text can be pasted into any zone.
func Write(p Params) (string, error) {
	if !validDomain(p.Domain) {
		return "", fmt.Errorf("%q is not a domain name", p.Domain)
	}
	if err := CheckHostname(p.Hostname); err != nil {
		return "", err
	}
	host := fqdn(p.Hostname)
	name := strings.TrimSuffix(host, ".") // in prose
	dom := fqdn(p.Domain)
	z := &zone{}
	z.comment("DNS records for %s, from `postrider dns %s`. Names are absolute; TTL %d s.", p.Domain, p.Domain, TTL)
	z.comment("%s must have A (and AAAA) records for the address(es) mail and clients reach, and the", name)
	z.comment("reverse (PTR) record of each sending address should name it: many receivers check.")

	z.blank()
	z.comment("MX: mail for %s goes to %s (RFC 5321 §5.1).", p.Domain, name)
	z.rr(dom, "MX", "10 "+host)

	z.blank()
	spf, why := spfRecord(p.RelayHost)
	z.comment("SPF (RFC 7208): %s", why)
	z.txt(dom, spf)

	z.blank()
	if err := z.dkim(p); err != nil {
		return "", err
	}

	z.blank()
	postmaster := "postmaster@" + p.Domain
	z.comment("DMARC (RFC 7489): mail that fails both SPF and DKIM for %s goes to Junk at receivers;", p.Domain)
	z.comment("daily aggregate reports go to %s. Once the reports show that all your mail passes,", postmaster)
	z.comment("change p=quarantine to p=reject; if other services send as %s, make them pass first.", p.Domain)
	z.txt("_dmarc."+dom, "v=DMARC1; p=quarantine; rua=mailto:"+postmaster)

	z.blank()
	z.comment("MTA-STS (RFC 8461): senders that support it deliver to %s only over TLS with a valid", p.Domain)
	z.comment("certificate for %s; mode %q (POSTRIDER_MTA_STS_MODE). The id changes with the policy.", name, p.Policy.Mode)
	z.txt("_mta-sts."+dom, "v=STSv1; id="+p.Policy.ID())
	z.comment("mta-sts.%s must be served over HTTPS with a valid certificate for that name (RFC 8461", p.Domain)
	z.comment("§3.3): point it at your TLS proxy, which forwards to a node's POSTRIDER_HTTP_ADDR, where")
	z.comment("every node answers https://mta-sts.%s%s with this policy:", p.Domain, PolicyPath)
	z.rr("mta-sts."+dom, "CNAME", host)
	for _, l := range strings.Split(strings.TrimSuffix(p.Policy.Text(), "\r\n"), "\r\n") {
		z.comment("  %s", l)
	}

	z.blank()
	z.comment("TLS-RPT (RFC 8460): senders report TLS and MTA-STS failures with %s to %s.", p.Domain, postmaster)
	z.txt("_smtp._tls."+dom, "v=TLSRPTv1; rua=mailto:"+postmaster)

	z.blank()
	z.comment("Client discovery (RFC 6186, RFC 8314 §5.1): mail clients find the servers of %s.", p.Domain)
	z.comment("Standard ports, as the load balancer or node publishes them; a disabled service has")
	z.comment("target \".\" (not available, RFC 6186 §3.4, RFC 2782). Lower priority is preferred.")
	for _, s := range p.Services {
		name := "_" + s.Name + "._tcp." + dom
		if s.Port == 0 {
			z.rr(name, "SRV", "0 0 0 .")
			continue
		}
		z.rr(name, "SRV", fmt.Sprintf("%d 1 %d %s", s.Priority, s.Port, host))
	}
	return z.b.String(), nil
}

// spfRecord is the SPF policy (RFC 7208) and why. Without a smarthost our
// nodes send, and they are the MX host: "mx" names them, "-all" refuses
// everyone else. With a smarthost the mail leaves from the relay's
// addresses, which we cannot know: "a:" names the relay host (right when
// it sends from the address it receives on), and "~all" (softfail) keeps
// mail from being refused by SPF alone when the relay sends from other
// addresses; DKIM still makes DMARC pass.
func spfRecord(relay string) (record, why string) {
	if relay == "" {
		return "v=spf1 mx -all", "only the MX host sends mail as this domain; every other sender fails."
	}
	host, _, err := net.SplitHostPort(relay)
	if err != nil {
		host = relay
	}
	host = strings.Trim(host, "[]")
	mech := "a:" + strings.TrimSuffix(host, ".")
	if a, err := netip.ParseAddr(host); err == nil {
		mech = "ip4:" + a.String()
		if a.Is6() && !a.Is4In6() {
			mech = "ip6:" + a.String()
		}
	}
	return "v=spf1 mx " + mech + " ~all", fmt.Sprintf("mail leaves through the smarthost %s; if your provider publishes an SPF include (include:...), use it instead of %s, and -all once all is well.", host, mech)
}

func (z *zone) dkim(p Params) error {
	if len(p.Keys) == 0 {
		z.comment("DKIM: %s has no signing key yet. Run `postrider dkim generate %s`, then", p.Domain, p.Domain)
		z.comment("`postrider dns %s` again for its records.", p.Domain)
		return nil
	}
	// Every key not removed is published: one that signs, one that will
	// (published first, so that it verifies from its first signature),
	// and one that stopped, while mail signed with it may still be checked.
	for _, st := range dkimkeys.States(p.Keys, p.Now) {
		k := st.Key
		rec, err := dkimkeys.Record(k)
		if err != nil {
			return err
		}
		switch st.Status {
		case mailauth.DKIMSigning:
			z.comment("DKIM (RFC 6376, RFC 8463): %s key %s, signing since %s.", k.Algorithm, k.Selector, dkimkeys.Time(dkimkeys.SignFrom(k)))
			if !st.Until.IsZero() {
				z.comment("A newer key takes over at %s; keep this record until %s, then", dkimkeys.Time(st.Until), dkimkeys.Time(st.Until.Add(dkimkeys.KeepRetired)))
				z.comment("delete it and run `postrider dkim remove %s %s`.", p.Domain, k.Selector)
			}
		case mailauth.DKIMPending:
			z.comment("DKIM: %s key %s, new: publish this record now; it signs from %s,", k.Algorithm, k.Selector, dkimkeys.Time(dkimkeys.SignFrom(k)))
			z.comment("when receivers must be able to find it.")
		default:
			if st.RemoveAfter.IsZero() {
				z.comment("DKIM: %s key %s, %s: it never signed; delete this record and run", k.Algorithm, k.Selector, st.Status)
			} else {
				z.comment("DKIM: %s key %s, %s: it stopped signing %s; keep this record until %s", k.Algorithm, k.Selector, st.Status, dkimkeys.Time(st.Stopped), dkimkeys.Time(st.RemoveAfter))
				z.comment("(mail signed with it may still be in transit), then delete it and run")
			}
			z.comment("`postrider dkim remove %s %s`.", p.Domain, k.Selector)
		}
		z.txt(fqdn(dkimkeys.RecordName(k.Selector, p.Domain)), rec)
	}
	return nil
}

type zone struct{ b strings.Builder }

func (z *zone) blank() { z.b.WriteString("\n") }

func (z *zone) comment(format string, a ...any) {
	z.b.WriteString("; " + fmt.Sprintf(format, a...) + "\n")
}

func (z *zone) rr(name, typ, data string) {
	fmt.Fprintf(&z.b, "%s\t%d\tIN\t%s\t%s\n", name, TTL, typ, data)
}

// txt writes a TXT record, split into strings of at most 255 octets.
func (z *zone) txt(name, text string) {
	parts := dkimkeys.SplitTXT(text)
	q := make([]string, len(parts))
	for i, s := range parts {
		q[i] = quote(s)
	}
	z.rr(name, "TXT", strings.Join(q, " "))
}

// quote makes a zone-file character-string (RFC 1035 §5.1).
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func fqdn(s string) string {
	return strings.TrimSuffix(strings.ToLower(s), ".") + "."
}

// ClientServices lists the SRV services of RFC 6186 and RFC 8314 with their
// standard ports; addrs maps each service name to its listener's address
// (POSTRIDER_*_ADDR), and an empty or missing one marks the service
// disabled. Clients reach the services on the standard ports of the load
// balancer or node, whatever port a node listens on behind it. Implicit TLS
// is preferred to STARTTLS (RFC 8314 §5.1) and IMAP to POP3.
func ClientServices(addrs map[string]string) []Service {
	out := []Service{
		{Name: "submissions", Port: 465, Priority: 0},
		{Name: "submission", Port: 587, Priority: 10},
		{Name: "imaps", Port: 993, Priority: 0},
		{Name: "imap", Port: 143, Priority: 10},
		{Name: "pop3s", Port: 995, Priority: 20},
		{Name: "pop3", Port: 110, Priority: 30},
	}
	for i := range out {
		if addrs[out[i].Name] == "" {
			out[i].Port = 0
		}
	}
	return out
}

// KeyRecord is the zone-file line that publishes a DKIM key.
func KeyRecord(k mailstore.DKIMKey) (string, error) {
	rec, err := dkimkeys.Record(k)
	if err != nil {
		return "", err
	}
	z := &zone{}
	z.txt(fqdn(dkimkeys.RecordName(k.Selector, k.Domain)), rec)
	return z.b.String(), nil
}
