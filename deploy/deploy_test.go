// Package deploy_test checks the deployment files against each other and
// against the binary: the Kubernetes base (rendered by kustomize when it can
// be), docker-compose.yml, the systemd unit and its environment file. A
// renamed variable, port or probe path breaks a deployment silently; here it
// breaks a test.
package deploy_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/postrider/postrider/internal/config"
)

// obj is one decoded YAML document.
type obj = map[string]any

// get walks a path of map keys and list indexes ("spec", "ports", 0, ...);
// nil when any step is missing.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(obj)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, path ...any) string {
	s, _ := get(v, path...).(string)
	return s
}

func list(v any, path ...any) []any {
	l, _ := get(v, path...).([]any)
	return l
}

func num(t *testing.T, v any, path ...any) int {
	t.Helper()
	n, ok := get(v, path...).(int)
	if !ok {
		t.Fatalf("%v: not a number: %v", path, get(v, path...))
	}
	return n
}

func decodeAll(t *testing.T, b []byte) []obj {
	t.Helper()
	var out []obj
	d := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var o obj
		err := d.Decode(&o)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("YAML: %v", err)
		}
		if o != nil {
			out = append(out, o)
		}
	}
}

// knownVars are the variables the binary reads.
func knownVars() map[string]config.Variable {
	m := map[string]config.Variable{}
	for _, v := range config.Variables() {
		m[v.Name] = v
	}
	return m
}

// imagePorts are the listen ports the image sets (deploy/Dockerfile's ENV),
// by variable: POSTRIDER_SMTP_ADDR -> 2525.
func imagePorts(t *testing.T) map[string]int {
	t.Helper()
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]int{}
	for _, m := range regexp.MustCompile(`(POSTRIDER_[A-Z0-9_]+_ADDR)=:(\d+)`).FindAllStringSubmatch(string(b), -1) {
		ports[m[1]], _ = strconv.Atoi(m[2])
	}
	if len(ports) != 8 {
		t.Fatalf("the Dockerfile sets %d listen addresses, want 8: %v", len(ports), ports)
	}
	return ports
}

// kustomize renders the base with kubectl or kustomize, whichever is
// installed; without either, it stitches the resources together as listed
// (what kustomize would do here, less the image substitution).
func kustomize(t *testing.T) (out []byte, rendered bool) {
	t.Helper()
	var cmd *exec.Cmd
	if p, err := exec.LookPath("kubectl"); err == nil {
		cmd = exec.Command(p, "kustomize", "kubernetes")
	} else if p, err := exec.LookPath("kustomize"); err == nil {
		cmd = exec.Command(p, "build", "kubernetes")
	}
	if cmd != nil {
		b, err := cmd.Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Fatalf("%v: %v\n%s", cmd.Args, err, ee.Stderr)
			}
			t.Fatalf("%v: %v", cmd.Args, err)
		}
		return b, true
	}
	t.Log("neither kubectl nor kustomize found: checking the resources unrendered")
	k, err := os.ReadFile("kubernetes/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for _, r := range list(decodeAll(t, k)[0], "resources") {
		b, err := os.ReadFile(filepath.Join("kubernetes", r.(string)))
		if err != nil {
			t.Fatal(err)
		}
		buf.WriteString("---\n")
		buf.Write(b)
	}
	return buf.Bytes(), false
}

func envOf(c any) map[string]any {
	m := map[string]any{}
	for _, e := range list(c, "env") {
		if v, ok := get(e, "value").(string); ok {
			m[str(e, "name")] = v
		} else {
			m[str(e, "name")] = get(e, "valueFrom")
		}
	}
	return m
}

func duration(t *testing.T, env map[string]any, name string, vars map[string]config.Variable) time.Duration {
	t.Helper()
	s, ok := env[name].(string)
	if !ok {
		s = vars[name].Default
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, s, err)
	}
	return d
}

func selectorMatches(t *testing.T, what string, sel any, labels any) {
	t.Helper()
	sm, _ := sel.(obj)
	lm, _ := labels.(obj)
	if len(sm) == 0 {
		t.Errorf("%s: empty selector", what)
	}
	for k, v := range sm {
		if lm[k] != v {
			t.Errorf("%s: selector %s=%v does not match the pods' labels %v", what, k, v, lm)
		}
	}
}

func TestKubernetesBase(t *testing.T) {
	out, rendered := kustomize(t)
	docs := decodeAll(t, out)
	byKind := map[string][]obj{}
	for _, d := range docs {
		byKind[str(d, "kind")] = append(byKind[str(d, "kind")], d)
	}
	for kind, n := range map[string]int{"Deployment": 1, "Service": 2, "PodDisruptionBudget": 1, "Job": 1, "Secret": 1} {
		if len(byKind[kind]) != n {
			t.Fatalf("%d %s, want %d", len(byKind[kind]), kind, n)
		}
	}
	vars := knownVars()
	ports := imagePorts(t)

	dep := byKind["Deployment"][0]
	pod := get(dep, "spec", "template")
	podLabels := get(pod, "metadata", "labels")
	selectorMatches(t, "Deployment", get(dep, "spec", "selector", "matchLabels"), podLabels)
	selectorMatches(t, "PodDisruptionBudget", get(byKind["PodDisruptionBudget"][0], "spec", "selector", "matchLabels"), podLabels)
	if num(t, dep, "spec", "replicas") < 2 {
		t.Error("fewer than 2 replicas: a rolling update would stop the service")
	}
	c := get(pod, "spec", "containers", 0)
	if a := list(c, "args"); len(a) != 1 || a[0] != "serve" {
		t.Errorf("container args %v, want [serve]", a)
	}
	env := envOf(c)
	secrets := map[string]obj{}
	for _, s := range byKind["Secret"] {
		secrets[str(s, "metadata", "name")] = s
	}
	checkEnv := func(who string, env map[string]any) {
		for name, v := range env {
			if _, ok := vars[name]; !ok {
				t.Errorf("%s: unknown variable %s", who, name)
			}
			if ref := get(v, "secretKeyRef"); ref != nil {
				s := secrets[str(ref, "name")]
				if s == nil || (get(s, "stringData", str(ref, "key")) == nil && get(s, "data", str(ref, "key")) == nil) {
					t.Errorf("%s: %s refers to secret %s key %s, which the base does not make", who, name, str(ref, "name"), str(ref, "key"))
				}
			}
		}
	}
	checkEnv("Deployment", env)
	if _, ok := env["POSTRIDER_DATABASE_URL"]; !ok {
		t.Error("no POSTRIDER_DATABASE_URL")
	}

	// Container ports are the image's listeners; every Service port
	// targets one of them by name.
	named := map[string]int{}
	for _, p := range list(c, "ports") {
		named[str(p, "name")] = num(t, p, "containerPort")
	}
	for name, v := range map[string]string{"smtp": "SMTP", "submission": "SUBMISSION", "submissions": "SUBMISSIONS",
		"imap": "IMAP", "imaps": "IMAPS", "pop3": "POP3", "pop3s": "POP3S", "http": "HTTP"} {
		if named[name] != ports["POSTRIDER_"+v+"_ADDR"] {
			t.Errorf("container port %s is %d, the image listens on %d", name, named[name], ports["POSTRIDER_"+v+"_ADDR"])
		}
	}
	standard := map[string]int{"smtp": 25, "submission": 587, "submissions": 465, "imap": 143, "imaps": 993, "pop3": 110, "pop3s": 995, "http": 8080}
	var lb obj
	for _, s := range byKind["Service"] {
		selectorMatches(t, "Service "+str(s, "metadata", "name"), get(s, "spec", "selector"), podLabels)
		if str(s, "spec", "type") == "LoadBalancer" {
			lb = s
		}
		for _, p := range list(s, "spec", "ports") {
			tp := str(p, "targetPort")
			if _, ok := named[tp]; !ok {
				t.Errorf("Service %s port %s targets %q, not a container port", str(s, "metadata", "name"), str(p, "name"), tp)
			}
			if num(t, p, "port") != standard[tp] {
				t.Errorf("Service port for %s is %d, want %d", tp, num(t, p, "port"), standard[tp])
			}
		}
	}
	if lb == nil || len(list(lb, "spec", "ports")) != 7 {
		t.Fatalf("no LoadBalancer Service with the 7 mail ports")
	}

	// Probes: ready is /readyz (fails while draining or without the
	// database), alive is /healthz (never fails while draining).
	for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": "/healthz"} {
		if str(c, probe, "httpGet", "path") != path || str(c, probe, "httpGet", "port") != "http" {
			t.Errorf("%s: %v, want GET %s on port http", probe, get(c, probe), path)
		}
	}

	// Stopping fits in the grace period: preStop, drain, shutdown.
	preStop := 0
	if get(c, "lifecycle", "preStop") != nil {
		preStop = num(t, c, "lifecycle", "preStop", "sleep", "seconds")
	}
	need := time.Duration(preStop)*time.Second + duration(t, env, "POSTRIDER_DRAIN_PERIOD", vars) + duration(t, env, "POSTRIDER_SHUTDOWN_TIMEOUT", vars)
	if grace := time.Duration(num(t, pod, "spec", "terminationGracePeriodSeconds")) * time.Second; grace < need+5*time.Second {
		t.Errorf("terminationGracePeriodSeconds %v: preStop, drain and shutdown need %v (and a margin)", grace, need)
	}

	// TLS files come from the mounted Secret.
	mounts := map[string]string{}
	for _, m := range list(c, "volumeMounts") {
		mounts[str(m, "name")] = str(m, "mountPath")
	}
	vols := map[string]any{}
	for _, v := range list(pod, "spec", "volumes") {
		vols[str(v, "name")] = v
	}
	for _, f := range []string{"POSTRIDER_TLS_CERT_FILE", "POSTRIDER_TLS_KEY_FILE"} {
		p, _ := env[f].(string)
		var vol string
		for name, mp := range mounts {
			if strings.HasPrefix(p, mp+"/") {
				vol = name
			}
		}
		if vol == "" || str(vols[vol], "secret", "secretName") == "" {
			t.Errorf("%s=%q is not in a mounted Secret", f, p)
		}
	}
	if dd := mounts["data"]; dd != "/var/lib/postrider" {
		t.Errorf("the image's data directory is not writable (mounted at %q) with readOnlyRootFilesystem", dd)
	}

	// The migration Job runs the same image with the same database.
	job := byKind["Job"][0]
	jc := get(job, "spec", "template", "spec", "containers", 0)
	if a := list(jc, "args"); len(a) != 1 || a[0] != "migrate" {
		t.Errorf("Job args %v, want [migrate]", a)
	}
	if str(jc, "image") != str(c, "image") {
		t.Errorf("Job image %q differs from the Deployment's %q", str(jc, "image"), str(c, "image"))
	}
	jenv := envOf(jc)
	checkEnv("Job", jenv)
	if get(jenv["POSTRIDER_DATABASE_URL"], "secretKeyRef", "name") != get(env["POSTRIDER_DATABASE_URL"], "secretKeyRef", "name") {
		t.Error("the Job and the Deployment read the database URL from different Secrets")
	}
	if rendered && !strings.Contains(str(c, "image"), "/") {
		t.Errorf("the image %q was not set by the kustomization's images", str(c, "image"))
	}
}

// composeServices reads docker-compose.yml.
func composeServices(t *testing.T) obj {
	t.Helper()
	b, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	docs := decodeAll(t, b)
	s, _ := get(docs[0], "services").(obj)
	if len(s) == 0 {
		t.Fatal("no services in docker-compose.yml")
	}
	return s
}

func TestComposeStack(t *testing.T) {
	svcs := composeServices(t)
	vars := knownVars()
	ports := imagePorts(t)
	nodes := []string{"postrider1", "postrider2"}
	for _, name := range nodes {
		n := svcs[name]
		if n == nil {
			t.Fatalf("no service %s", name)
		}
		env := map[string]any{}
		for k, v := range get(n, "environment").(obj) {
			env[k] = v
			if _, ok := vars[k]; !ok {
				t.Errorf("%s: unknown variable %s", name, k)
			}
		}
		if str(n, "restart") == "" {
			t.Errorf("%s: no restart policy", name)
		}
		if hc := list(n, "healthcheck", "test"); len(hc) < 3 || hc[1] != "/usr/local/bin/postrider" || hc[2] != "healthcheck" {
			t.Errorf("%s: health check %v, want the binary's healthcheck", name, hc)
		}
		grace, err := time.ParseDuration(str(n, "stop_grace_period"))
		need := duration(t, env, "POSTRIDER_DRAIN_PERIOD", vars) + duration(t, env, "POSTRIDER_SHUTDOWN_TIMEOUT", vars)
		if err != nil || grace < need+5*time.Second {
			t.Errorf("%s: stop_grace_period %q, drain and shutdown need %v and a margin", name, str(n, "stop_grace_period"), need)
		}
		// Both nodes serve the certificate the certs step made, from the
		// volume it wrote.
		cert, _ := env["POSTRIDER_TLS_CERT_FILE"].(string)
		vol := ""
		for _, v := range list(n, "volumes") {
			src, dst, _ := strings.Cut(v.(string), ":")
			dst, _, _ = strings.Cut(dst, ":")
			if strings.HasPrefix(cert, dst+"/") {
				vol = src
			}
		}
		if vol == "" {
			t.Errorf("%s: POSTRIDER_TLS_CERT_FILE=%q is on no volume", name, cert)
		}
		certsVol := ""
		for _, v := range list(svcs["certs"], "volumes") {
			certsVol, _, _ = strings.Cut(v.(string), ":")
		}
		if vol != certsVol || filepath.Base(cert) != "selfsigned-cert.pem" {
			t.Errorf("%s: certificate %q on volume %q, but the certs step writes selfsigned-cert.pem to %q", name, cert, vol, certsVol)
		}
		for _, dep := range []string{"migrate", "certs"} {
			if str(n, "depends_on", dep, "condition") != "service_completed_successfully" {
				t.Errorf("%s does not wait for %s", name, dep)
			}
		}
	}
	if a := list(svcs["certs"], "command"); len(a) != 1 || a[0] != "selfsigned" {
		t.Errorf("certs command %v", a)
	}
	if a := list(svcs["migrate"], "command"); len(a) != 1 || a[0] != "migrate" {
		t.Errorf("migrate command %v", a)
	}

	// HAProxy's servers are compose services on ports the image listens on.
	cfg, err := os.ReadFile("haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	imagePortSet := map[string]bool{}
	for _, p := range ports {
		imagePortSet[strconv.Itoa(p)] = true
	}
	servers := regexp.MustCompile(`(?m)^\s*server\s+\S+\s+([A-Za-z0-9_.-]+):(\d+)`).FindAllStringSubmatch(string(cfg), -1)
	if len(servers) == 0 {
		t.Fatal("no server lines in haproxy.cfg")
	}
	for _, s := range servers {
		if !slices.Contains(nodes, s[1]) || !imagePortSet[s[2]] {
			t.Errorf("haproxy.cfg server %s:%s is not a node service on an image port", s[1], s[2])
		}
	}
}

func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("postrider.service")
	if err != nil {
		t.Fatal(err)
	}
	envFile, err := os.ReadFile("postrider.env")
	if err != nil {
		t.Fatal(err)
	}
	vars := knownVars()
	env := map[string]any{}
	for _, line := range strings.Split(string(envFile), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("postrider.env: %q is not VARIABLE=value", line)
		}
		if _, known := vars[k]; !known {
			t.Errorf("postrider.env: unknown variable %s", k)
		}
		env[k] = v
	}
	keys := map[string]string{}
	for _, line := range strings.Split(string(unit), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = v
		}
	}
	for k, want := range map[string]string{"EnvironmentFile": "/etc/postrider/postrider.env", "DynamicUser": "yes",
		"StateDirectory": "postrider", "ProtectSystem": "strict", "NoNewPrivileges": "yes",
		"AmbientCapabilities": "CAP_NET_BIND_SERVICE", "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
		"Restart": "on-failure", "KillSignal": "SIGTERM", "ExecStart": "/usr/local/bin/postrider serve",
		"Environment": "POSTRIDER_DATA_DIR=/var/lib/postrider"} {
		if keys[k] != want {
			t.Errorf("%s=%q, want %q", k, keys[k], want)
		}
	}
	// Whatever the drain period is set to (or left at), systemd waits for
	// it and the shutdown before it kills.
	stop, err := strconv.Atoi(keys["TimeoutStopSec"])
	if err != nil {
		t.Fatalf("TimeoutStopSec=%q", keys["TimeoutStopSec"])
	}
	need := max(duration(t, env, "POSTRIDER_DRAIN_PERIOD", vars), duration(t, map[string]any{}, "POSTRIDER_DRAIN_PERIOD", vars)) +
		duration(t, env, "POSTRIDER_SHUTDOWN_TIMEOUT", vars)
	if time.Duration(stop)*time.Second < need+5*time.Second {
		t.Errorf("TimeoutStopSec=%d: drain and shutdown need %v and a margin", stop, need)
	}
}
