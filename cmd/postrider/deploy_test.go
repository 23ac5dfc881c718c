package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDockerfileStampsVersion builds the binary with the ldflags the
// Dockerfile uses, so that the image reports the VERSION it was built
// with (a renamed variable would silently leave "dev").
func TestDockerfileStampsVersion(t *testing.T) {
	df, err := os.ReadFile("../../deploy/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`-ldflags "([^"]*)"`).FindSubmatch(df)
	if m == nil || !strings.Contains(string(m[1]), "-X main.version=${VERSION}") {
		t.Fatalf("the Dockerfile's go build does not set main.version from VERSION: %q", m)
	}
	ldflags := strings.ReplaceAll(string(m[1]), "${VERSION}", "v1.2.3-test")
	bin := filepath.Join(t.TempDir(), "postrider")
	if out, err := exec.Command("go", "build", "-ldflags", ldflags, "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil || strings.TrimSpace(string(out)) != "postrider v1.2.3-test" {
		t.Fatalf("version: %q %v", out, err)
	}
}
