package imapd

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postrider/postrider/internal/frontend"
)

// metrics are IMAP's own Prometheus metrics, registered on Config.Metrics
// when it is set. Connections, commands (by name and result, with latency)
// and logins are the shared kit's: postrider_connections_*,
// postrider_commands_total, postrider_command_duration_seconds and
// postrider_auth_total with proto="imap".
type metrics struct {
	idle prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		idle: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "postrider_imap_idle_active", Help: "IMAP connections in IDLE now.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.idle} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// commandLabel bounds the label values to known command names.
func commandLabel(name string, uid bool) string {
	if commands[name] == nil {
		return "unknown"
	}
	if uid {
		return "UID " + name
	}
	return name
}

// observe records one finished command (IDLE's duration is not latency).
func (c *conn) observe(cx *cmdCtx, status string, start time.Time) {
	took := time.Since(start)
	if cx.name == "IDLE" {
		took = -1
	}
	c.fc.Metrics().Command(commandLabel(cx.name, cx.uid), strings.ToLower(status), took)
}

// levelTrace is the protocol trace level: command lines, with credentials
// masked and literal contents never logged.
const levelTrace = frontend.LevelTrace

// traceCommand logs the first line of a command at levelTrace.
func (c *conn) traceCommand(cx *cmdCtx) {
	if !c.log.Enabled(context.Background(), levelTrace) {
		return
	}
	line := string(c.p.line)
	switch cx.name {
	case "LOGIN", "AUTHENTICATE":
		line = cx.tag + " " + cx.name + " ***"
	}
	if len(line) > 200 {
		line = line[:200] + "..."
	}
	c.log.Log(context.Background(), levelTrace, "C:", "line", line)
}

// traceReply logs a command's tagged response at levelTrace (untagged data
// such as FETCH results is never traced: it carries message contents).
func (c *conn) traceReply(cx *cmdCtx, pe *protoError) {
	if !c.log.Enabled(context.Background(), levelTrace) {
		return
	}
	line := cx.tag + " OK " + cx.okText
	if pe != nil {
		line = cx.tag + " " + pe.status + " " + pe.text
		if pe.code != "" {
			line = cx.tag + " " + pe.status + " [" + pe.code + "] " + pe.text
		}
	} else if cx.okCode != "" {
		line = cx.tag + " OK [" + cx.okCode + "] " + cx.okText
	}
	c.log.Log(context.Background(), levelTrace, "S:", "line", line)
}
