package accesstoken

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// npmSpecs are the tokens both sides build at a fixed issue_ts and salt,
// with services in packed (ascending type) order as Parse returns them.
// APaaS roles avoid 0, which agora-token's ServiceApaas turns into -1.
var npmSpecs = []string{
	allServicesSpec,
	`{"app_id":"970CA35de60c44645bbae8a215061b33","issue_ts":1763800000,"expire":3600,"salt":99999999,"services":[` +
		`{"type":"rtc","channel":"cam-42","uid":"2882341273","privileges":{"join_channel":3600,"publish_audio_stream":3600,"publish_video_stream":3600,"publish_data_stream":3600}}]}`,
	`{"app_id":"970CA35de60c44645bbae8a215061b33","issue_ts":4294967295,"expire":86400,"salt":1,"services":[` +
		`{"type":"rtc","channel":"*","uid":"dev-1","privileges":{"join_channel":86400,"publish_data_stream":86400}},` +
		`{"type":"rtm","user_id":"dev-1","privileges":{"login":86400}}]}`,
	`{"app_id":"970CA35de60c44645bbae8a215061b33","issue_ts":1111111,"expire":1,"salt":7,"services":[` +
		`{"type":"rtm","user_id":"user","privileges":{"login":1}},` +
		`{"type":"chat","user_id":"ee11cbb19052e40b07aac0ca060c23ee","privileges":{"user":1}},` +
		`{"type":"apaas","room_uuid":"room","user_uuid":"user","role":2,"privileges":{"room_user":1}}]}`,
}

// npmAnswer is what testdata/npm/oracle.js writes.
type npmAnswer struct {
	Built  []string `json:"built"`
	Parsed []struct {
		OK       bool            `json:"ok"`
		Verified bool            `json:"verified"`
		Token    json.RawMessage `json:"token"`
	} `json:"parsed"`
	HighLevel []string `json:"high_level"`
}

// runNPMOracle runs Agora's agora-token package on a request. The
// package is installed outside the checkout (npmModules); oracle.js runs
// from a temporary directory whose node_modules links to that install.
func runNPMOracle(t *testing.T, req any) npmAnswer {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not installed: the agora-token cross-check needs Node.js and npm (make test-deps installs them): %v", err)
	}
	src, err := filepath.Abs(filepath.Join("testdata", "npm"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	script, err := os.ReadFile(filepath.Join(src, "oracle.js"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "oracle.js"), script, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(npmModules(ctx, t, src), filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	in, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, node, "oracle.js")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node oracle.js: %v\n%s", err, stderr.Bytes())
	}
	var ans npmAnswer
	if err := json.Unmarshal(out, &ans); err != nil {
		t.Fatalf("oracle answer %q: %v", out, err)
	}
	return ans
}

// npmModules returns a node_modules directory holding the packages that
// src's package-lock.json pins, installing them with npm ci on first
// use. The install lives in the user's cache directory, outside the
// checkout, named after the agora-token version and the lock file's
// hash: later runs reuse it, and a new pin gets a fresh install. It is
// made in a temporary directory and renamed into place, so an
// interrupted or concurrent run never leaves a half install behind.
func npmModules(ctx context.Context, t *testing.T, src string) string {
	t.Helper()
	lock, err := os.ReadFile(filepath.Join(src, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := os.ReadFile(filepath.Join(src, "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	var manifest struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	if err := json.Unmarshal(pkg, &manifest); err != nil {
		t.Fatalf("%s: %v", filepath.Join(src, "package.json"), err)
	}
	version := manifest.Dependencies["agora-token"]
	if version == "" {
		t.Fatalf("%s names no agora-token version", filepath.Join(src, "package.json"))
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	sum := sha256.Sum256(lock)
	root := filepath.Join(cache, "agoratokens", "npm-oracle")
	dir := filepath.Join(root, "agora-token-"+version+"-"+hex.EncodeToString(sum[:6]))
	modules := filepath.Join(dir, "node_modules")
	installed := func() bool {
		_, err := os.Stat(filepath.Join(modules, "agora-token", "package.json"))
		return err == nil
	}
	if installed() {
		return modules
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatalf("npm is not installed: the agora-token cross-check needs it to install agora-token (make test-deps installs it): %v", err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(root, "install-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	for name, content := range map[string][]byte{"package.json": pkg, "package-lock.json": lock} {
		if err := os.WriteFile(filepath.Join(tmp, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error", "--prefer-offline")
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s (installs agora-token %s): %v\n%s", tmp, version, err, out)
	}
	if err := os.Rename(tmp, dir); err != nil && !installed() {
		t.Fatalf("install agora-token %s into %s: %v", version, dir, err)
	}
	return modules
}

// canonical re-marshals a token JSON through our schema.
func canonical(t *testing.T, doc []byte) string {
	t.Helper()
	var tok Token
	if err := json.Unmarshal(doc, &tok); err != nil {
		t.Fatalf("token JSON %s: %v", doc, err)
	}
	return mustJSON(t, tok)
}

func TestNPMAgoraToken(t *testing.T) {
	var build []map[string]any
	var ours []string
	var parse []map[string]string
	for _, spec := range npmSpecs {
		var m map[string]any
		if err := json.Unmarshal([]byte(spec), &m); err != nil {
			t.Fatal(err)
		}
		m["certificate"] = testCert
		build = append(build, m)
		tok := mustBuild(t, spec)
		ours = append(ours, tok)
		parse = append(parse, map[string]string{"token": tok, "certificate": testCert})
	}
	// A wrong certificate must not verify on the Node side either.
	parse = append(parse, map[string]string{"token": ours[0], "certificate": "00000000000000000000000000000000"})

	highLevel := []struct {
		Builder string `json:"builder"`
		Args    []any  `json:"args"`
		ours    func(b *Builder) (string, error)
	}{
		{"rtc_uid", []any{testAppID, testCert, "cam-42", uint32(2882341273), 1, 3600, 600},
			func(b *Builder) (string, error) { return b.RTCWithUID("cam-42", 2882341273, RolePublisher, 3600, 600) }},
		{"rtc_uid", []any{testAppID, testCert, "cam-42", 0, 2, 3600, 3600},
			func(b *Builder) (string, error) { return b.RTCWithUID("cam-42", 0, RoleSubscriber, 3600, 3600) }},
		{"rtc_account", []any{testAppID, testCert, "cam-42", "dev@x", 1, 86400, 86400},
			func(b *Builder) (string, error) {
				return b.RTCWithAccount("cam-42", "dev@x", RolePublisher, 86400, 86400)
			}},
		{"rtc_uid_privileges", []any{testAppID, testCert, "cam-42", 7, 3600, 3000, 200, 300, 400},
			func(b *Builder) (string, error) {
				return b.RTCWithPrivileges("cam-42", "7", RTCPrivileges{Token: 3600, Join: 3000, PublishAudio: 200, PublishVideo: 300, PublishData: 400})
			}},
		{"rtc_rtm", []any{testAppID, testCert, "cam-42", "dev-1", 1, 3600, 600},
			func(b *Builder) (string, error) { return b.RTCAndRTM("cam-42", "dev-1", RolePublisher, 3600, 600) }},
		{"rtm", []any{testAppID, testCert, "dev-1", 600},
			func(b *Builder) (string, error) { return b.RTM("dev-1", "", 600) }},
		{"chat_user", []any{testAppID, testCert, "chat-user", 600},
			func(b *Builder) (string, error) { return b.ChatUser("chat-user", 600) }},
		{"chat_app", []any{testAppID, testCert, 600},
			func(b *Builder) (string, error) { return b.ChatApp(600) }},
		{"education_user", []any{testAppID, testCert, "user-uuid", 600},
			func(b *Builder) (string, error) { return b.EducationUser("user-uuid", 600) }},
		{"education_app", []any{testAppID, testCert, 600},
			func(b *Builder) (string, error) { return b.EducationApp(600) }},
	}

	ans := runNPMOracle(t, map[string]any{"build": build, "parse": parse, "high_level": highLevel})
	if len(ans.Built) != len(npmSpecs) || len(ans.Parsed) != len(parse) || len(ans.HighLevel) != len(highLevel) {
		t.Fatalf("oracle answered %d built, %d parsed, %d high-level", len(ans.Built), len(ans.Parsed), len(ans.HighLevel))
	}

	for i, spec := range npmSpecs {
		want := canonical(t, []byte(spec))
		// Node's token parses and verifies here, with the same payload.
		theirs, err := Parse(ans.Built[i])
		if err != nil {
			t.Errorf("spec %d: Parse(agora-token's token): %v", i, err)
			continue
		}
		if got := mustJSON(t, theirs); got != want {
			t.Errorf("spec %d: agora-token's token reads\n%s\nwant %s", i, got, want)
		}
		if n, err := theirs.Verify(testCert); n != 0 || err != nil {
			t.Errorf("spec %d: agora-token's token does not verify: %v", i, err)
		}
		if !bytes.Equal(payload(t, ans.Built[i]), payload(t, ours[i])) {
			t.Errorf("spec %d: payloads differ\n node %x\n ours %x", i, payload(t, ans.Built[i]), payload(t, ours[i]))
		}
		// Ours parses and verifies in Node, field for field.
		p := ans.Parsed[i]
		if !p.OK || !p.Verified {
			t.Errorf("spec %d: agora-token parse ok=%v verified=%v", i, p.OK, p.Verified)
			continue
		}
		if got := canonical(t, p.Token); got != want {
			t.Errorf("spec %d: agora-token reads our token as\n%s\nwant %s", i, got, want)
		}
	}
	if last := ans.Parsed[len(ans.Parsed)-1]; !last.OK || last.Verified {
		t.Errorf("agora-token with a wrong certificate: ok=%v verified=%v, want ok and not verified", last.OK, last.Verified)
	}

	for i, h := range highLevel {
		node := ans.HighLevel[i]
		theirs, err := Parse(node)
		if err != nil {
			t.Errorf("%s: Parse(agora-token's token): %v", h.Builder, err)
			continue
		}
		if n, err := theirs.Verify(testCert); n != 0 || err != nil {
			t.Errorf("%s: agora-token's token does not verify: %v", h.Builder, err)
		}
		got, err := h.ours(builderAt(theirs.IssueTs, theirs.Salt))
		if err != nil {
			t.Errorf("%s: ours: %v", h.Builder, err)
			continue
		}
		if !bytes.Equal(payload(t, got), payload(t, node)) {
			tok, _ := Parse(got)
			t.Errorf("%s: payloads differ\n node %s\n ours %s", h.Builder, mustJSON(t, theirs), mustJSON(t, tok))
		}
	}
}
