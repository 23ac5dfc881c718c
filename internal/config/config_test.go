package config

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	for _, v := range Variables() {
		unsetenv(t, v.Name)
	}
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.SMTPAddr != ":25" || c.SubmissionAddr != ":587" || c.SubmissionsAddr != ":465" ||
		c.IMAPAddr != ":143" || c.IMAPSAddr != ":993" || c.POP3Addr != ":110" || c.POP3SAddr != ":995" || c.HTTPAddr != ":8080" {
		t.Errorf("listen defaults wrong: %+v", c)
	}
	if c.MaxMessageSize != 52428800 || c.LogLevel != "info" || c.LogFormat != "json" || c.DataDir != "./data" {
		t.Errorf("defaults wrong: %+v", c)
	}
	if c.Hostname == "" {
		t.Error("hostname not defaulted")
	}
	if c.MaxConns != 2000 || c.SMTPMinDataRate != 1024 {
		t.Errorf("connection defaults wrong: MaxConns %d SMTPMinDataRate %d", c.MaxConns, c.SMTPMinDataRate)
	}
	if !c.InboundAuth || c.DMARCPolicy != "enforce" || c.DNSResolver != "" {
		t.Errorf("inbound auth defaults wrong: InboundAuth %v DMARCPolicy %q DNSResolver %q", c.InboundAuth, c.DMARCPolicy, c.DNSResolver)
	}
}

func TestEmptyAddrDisables(t *testing.T) {
	t.Setenv("POSTRIDER_SMTP_ADDR", "")
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.SMTPAddr != "" {
		t.Fatalf("POSTRIDER_SMTP_ADDR= (empty) gave %q; an empty value must disable the listener", c.SMTPAddr)
	}
}

func TestInvalidValuesNameTheVariable(t *testing.T) {
	cases := []struct{ name, value, want string }{
		{"POSTRIDER_SMTP_ADDR", "nonsense", "POSTRIDER_SMTP_ADDR"},
		{"POSTRIDER_IMAP_ADDR", "127.0.0.1:99999", "POSTRIDER_IMAP_ADDR"},
		{"POSTRIDER_MAX_MESSAGE_SIZE", "fifty", "POSTRIDER_MAX_MESSAGE_SIZE"},
		{"POSTRIDER_MAX_MESSAGE_SIZE", "-5", "POSTRIDER_MAX_MESSAGE_SIZE"},
		{"POSTRIDER_LOG_LEVEL", "loud", "POSTRIDER_LOG_LEVEL"},
		{"POSTRIDER_LOG_FORMAT", "xml", "POSTRIDER_LOG_FORMAT"},
		{"POSTRIDER_TRUSTED_PROXIES", "10.0.0.0/33", "POSTRIDER_TRUSTED_PROXIES"},
		{"POSTRIDER_ALLOW_INSECURE_AUTH", "maybe", "POSTRIDER_ALLOW_INSECURE_AUTH"},
		{"POSTRIDER_TLS_CERT_FILE", "/x.pem", "POSTRIDER_TLS_CERT_FILE"},
		{"POSTRIDER_RELAY_HOST", "smarthost", "POSTRIDER_RELAY_HOST"},
		{"POSTRIDER_RELAY_USERNAME", "u", "POSTRIDER_RELAY_USERNAME"},
		{"POSTRIDER_DNS_RESOLVER", "8.8.8.8", "POSTRIDER_DNS_RESOLVER"},
		{"POSTRIDER_QUEUE_LIFETIME", "5d", "POSTRIDER_QUEUE_LIFETIME"},
		{"POSTRIDER_QUEUE_LIFETIME", "0s", "POSTRIDER_QUEUE_LIFETIME"},
		{"POSTRIDER_DELIVERY_WORKERS", "0", "POSTRIDER_DELIVERY_WORKERS"},
		{"POSTRIDER_SHUTDOWN_TIMEOUT", "soon", "POSTRIDER_SHUTDOWN_TIMEOUT"},
		{"POSTRIDER_DRAIN_PERIOD", "-1s", "POSTRIDER_DRAIN_PERIOD"},
		{"POSTRIDER_DRAIN_PERIOD", "2h", "POSTRIDER_DRAIN_PERIOD"},
		{"POSTRIDER_DRAIN_PERIOD", "10", "POSTRIDER_DRAIN_PERIOD"},
		{"POSTRIDER_TOMBSTONE_RETENTION", "30d", "POSTRIDER_TOMBSTONE_RETENTION"},
		{"POSTRIDER_TOMBSTONE_RETENTION", "10m", "POSTRIDER_TOMBSTONE_RETENTION"},
		{"POSTRIDER_MAX_CONNS", "-1", "POSTRIDER_MAX_CONNS"},
		{"POSTRIDER_MAX_CONNS", "many", "POSTRIDER_MAX_CONNS"},
		{"POSTRIDER_SMTP_MIN_DATA_RATE", "-1", "POSTRIDER_SMTP_MIN_DATA_RATE"},
		{"POSTRIDER_SMTP_MIN_DATA_RATE", "1k", "POSTRIDER_SMTP_MIN_DATA_RATE"},
		{"POSTRIDER_DMARC_POLICY", "strict", "POSTRIDER_DMARC_POLICY"},
		{"POSTRIDER_INBOUND_AUTH", "sometimes", "POSTRIDER_INBOUND_AUTH"},
		{"POSTRIDER_DNS_RESOLVER", "127.0.0.1", "POSTRIDER_DNS_RESOLVER"},
	}
	for _, tc := range cases {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			t.Setenv(tc.name, tc.value)
			_, err := Load()
			if err == nil {
				t.Fatalf("%s=%q accepted", tc.name, tc.value)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name %s", err, tc.want)
			}
		})
	}
}

func TestSizeSuffixes(t *testing.T) {
	for in, want := range map[string]Size{"1024": 1024, "50M": 50 << 20, "1g": 1 << 30, "512k": 512 << 10} {
		var s Size
		if err := s.UnmarshalText([]byte(in)); err != nil || s != want {
			t.Errorf("%q: got %d, %v; want %d", in, s, err, want)
		}
	}
}

func TestTrustedProxies(t *testing.T) {
	t.Setenv("POSTRIDER_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.7,2001:db8::/32")
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	ps, err := c.TrustedProxyPrefixes()
	if err != nil || len(ps) != 3 || ps[1].Bits() != 32 {
		t.Fatalf("got %v %v", ps, err)
	}
}

func TestVariablesDocumented(t *testing.T) {
	vs := Variables()
	if len(vs) < 20 {
		t.Fatalf("only %d variables", len(vs))
	}
	for _, v := range vs {
		if !strings.HasPrefix(v.Name, Prefix) || v.Meaning == "" {
			t.Errorf("variable %+v lacks prefix or meaning", v)
		}
	}
}

func unsetenv(t *testing.T, name string) {
	t.Setenv(name, "") // registers restoration
	os.Unsetenv(name)
}

func TestTombstoneRetention(t *testing.T) {
	for in, want := range map[string]time.Duration{"0": 0, "2160h": 90 * 24 * time.Hour, "1h": time.Hour} {
		t.Setenv("POSTRIDER_TOMBSTONE_RETENTION", in)
		c, err := Load()
		if err != nil || c.TombstoneRetention != want {
			t.Errorf("POSTRIDER_TOMBSTONE_RETENTION=%s: got %v, %v; want %v", in, c.TombstoneRetention, err, want)
		}
	}
}

func TestMaskURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:secret@h:5432/db?sslmode=disable": "postgres://u:********@h:5432/db?sslmode=disable",
		"postgres://u@h/db":                             "postgres://u@h/db",
		// Several hosts (failover, target_session_attrs as pgx supports).
		"postgres://u:secret@h1:5432,h2:5433/db?target_session_attrs=read-write": "postgres://u:********@h1:5432,h2:5433/db?target_session_attrs=read-write",
		"postgres://u@h/db?password=secret":                                      "postgres://u@h/db?password=********",
		"host=h user=u password=secret dbname=d":                                 "host=h user=u password=******** dbname=d",
		"":                                                                       "",
	} {
		if got := maskURL(in); got != want || strings.Contains(got, "secret") {
			t.Errorf("maskURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUnknownVariables(t *testing.T) {
	got := UnknownVariables([]string{"POSTRIDER_IMAP_ADDR=:143", "POSTRIDER_IMAP_ADR=:1", "POSTRIDER_TEST_DATABASE_URL=x",
		"HOME=/root", "POSTRIDER_COMPLETELY_DIFFERENT=1"})
	want := []string{"POSTRIDER_COMPLETELY_DIFFERENT", "POSTRIDER_IMAP_ADR (did you mean POSTRIDER_IMAP_ADDR?)"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("UnknownVariables = %q, want %q", got, want)
	}
}

func TestOutboundSettings(t *testing.T) {
	for _, v := range Variables() {
		unsetenv(t, v.Name)
	}
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.QueueLifetime != 120*time.Hour || c.DeliveryWorkers != 16 || c.DNSResolver != "" || c.RelayHost != "" {
		t.Errorf("outbound defaults wrong: %v %d %q %q", c.QueueLifetime, c.DeliveryWorkers, c.DNSResolver, c.RelayHost)
	}
	t.Setenv("POSTRIDER_RELAY_HOST", "smtp.example.net:587")
	t.Setenv("POSTRIDER_RELAY_USERNAME", "relayuser")
	t.Setenv("POSTRIDER_RELAY_PASSWORD", "hunter2-relay")
	t.Setenv("POSTRIDER_DNS_RESOLVER", "127.0.0.1:5353")
	c, err = Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.RelayPassword != "hunter2-relay" || c.DNSResolver != "127.0.0.1:5353" {
		t.Errorf("not read: %+v", c)
	}
	// postrider config never shows the relay password.
	found := false
	for _, e := range c.Effect() {
		if strings.Contains(e.Value, "hunter2") {
			t.Errorf("%s shows the secret: %q", e.Name, e.Value)
		}
		if e.Name == "POSTRIDER_RELAY_PASSWORD" {
			found = e.Value == "********"
		}
	}
	if !found {
		t.Error("POSTRIDER_RELAY_PASSWORD not listed masked")
	}
}

func TestOutboundIPs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // addresses joined by " ", or "error"
	}{
		{"", ""},
		{"192.0.2.10", "192.0.2.10"},
		{" 192.0.2.10 , 2001:db8::25 ", "192.0.2.10 2001:db8::25"},
		{"::ffff:192.0.2.10", "192.0.2.10"},
		{"192.0.2.10,192.0.2.11", "error"},
		{"2001:db8::1,2001:db8::2", "error"},
		{"0.0.0.0", "error"},
		{"fe80::1%eth0", "error"},
		{"mail.example.net", "error"},
		{"224.0.0.1", "error"},
	} {
		c := &Config{OutboundIPs: tc.in}
		got, err := c.OutboundAddrs()
		s := ""
		for i, a := range got {
			if i > 0 {
				s += " "
			}
			s += a.String()
		}
		if err != nil {
			s = "error"
		}
		if s != tc.want {
			t.Errorf("%q: got %q (%v), want %q", tc.in, s, err, tc.want)
		}
	}
	t.Setenv("POSTRIDER_OUTBOUND_IPS", "192.0.2.10,192.0.2.11")
	if _, err := Load(); err == nil || !strings.Contains(err.Error(), "OUTBOUND_IPS") {
		t.Errorf("Load with two IPv4 sources: %v", err)
	}
}
