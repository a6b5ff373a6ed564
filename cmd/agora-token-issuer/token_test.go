package main

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"agoratokens/accesstoken"
)

const (
	testAppID = "970CA35de60c44645bbae8a215061b33"
	testCert  = "5CFd2fd1755d40ecb72977518be15d3b"
	otherCert = "0123456789abcdef0123456789abcdef"
)

// result is what one run of the program produced.
type result struct {
	code           int
	stdout, stderr string
}

// tokenCmd runs `agora-token-issuer token args…` with stdin.
func tokenCmd(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"token"}, args...), strings.NewReader(stdin), &out, &errb)
	return result{code, out.String(), errb.String()}
}

// mustOK fails the test unless r exited 0, and returns its stdout.
func mustOK(t *testing.T, r result) string {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d, stderr: %s", r.code, r.stderr)
	}
	return r.stdout
}

// clearEnv makes the test independent of the caller's environment.
func clearEnv(t *testing.T) {
	t.Helper()
	t.Setenv(envAppID, "")
	t.Setenv(envCertificate, "")
}

// writeCert writes content to a fresh file with mode perm.
func writeCert(t *testing.T, name, content string, perm os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil { // umask may have narrowed it
		t.Fatal(err)
	}
	return p
}

// vector is one of Agora's test vectors, in the token CLI's schema.
type vector struct {
	Test           string            `json:"test"`
	Kind           string            `json:"kind"`
	AppID          string            `json:"app_id"`
	Certificate    string            `json:"app_certificate"`
	IssueTs        uint32            `json:"issue_ts"`
	Salt           uint32            `json:"salt"`
	Expire         uint32            `json:"expire"`
	Services       []json.RawMessage `json:"services"`
	Token          string            `json:"token"`
	GoZlibByteSame bool              `json:"go_zlib_byte_exact"`
}

// spec is the vector's fields as a build spec.
func (v vector) spec(t *testing.T) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"app_id": v.AppID, "issue_ts": v.IssueTs, "expire": v.Expire,
		"salt": v.Salt, "services": v.Services,
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func loadVectors(t *testing.T) []vector {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "accesstoken2-go.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Vectors []vector }
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Vectors) < 10 {
		t.Fatalf("only %d vectors in testdata", len(f.Vectors))
	}
	return f.Vectors
}

// decodeJSON decodes inspect output into a generic value, dropping the
// human-readable fields.
func decodeJSON(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, s)
	}
	delete(m, fieldIssued)
	delete(m, fieldExpires)
	return m
}

// normalizeSpec decodes a spec and drops what inspect does not print: the
// optional RTM2 resource and permission names beside their numbers.
func normalizeSpec(t *testing.T, spec string) map[string]any {
	t.Helper()
	m := decodeJSON(t, spec)
	if _, ok := m["version"]; !ok {
		m["version"] = accesstoken.Version
	}
	svcs, _ := m["services"].([]any)
	for _, s := range svcs {
		perms, _ := s.(map[string]any)["permissions"].([]any)
		for _, p := range perms {
			delete(p.(map[string]any), "resource")
			delete(p.(map[string]any), "permission")
		}
	}
	return m
}

func TestTokenBuildReproducesAgoraVectors(t *testing.T) {
	clearEnv(t)
	certFile := writeCert(t, "cert", testCert+"\n", 0o600)
	for _, v := range loadVectors(t) {
		t.Run(v.Test, func(t *testing.T) {
			if v.Certificate != testCert {
				t.Fatalf("vector certificate changed; update testCert")
			}
			got := strings.TrimSpace(mustOK(t, tokenCmd(t, v.spec(t), "build", "--certificate-file", certFile, "-")))
			// The codec writes its own zlib stream; the signature may not differ.
			ours, err1 := accesstoken.Parse(got)
			theirs, err2 := accesstoken.Parse(v.Token)
			if err1 != nil || err2 != nil || !bytes.Equal(ours.Signature, theirs.Signature) {
				t.Errorf("build gave\n%s\nwhose signature differs from\n%s (%v, %v)", got, v.Token, err1, err2)
			}
			// Compressed bytes may differ; what inspect shows may not.
			want := decodeJSON(t, mustOK(t, tokenCmd(t, "", "inspect", v.Token)))
			if back := decodeJSON(t, mustOK(t, tokenCmd(t, "", "inspect", got))); !reflect.DeepEqual(back, want) {
				t.Errorf("inspect(build(spec)) = %v\ninspect(vector) = %v", back, want)
			}
			// inspect gives back every field of the vector.
			if spec := normalizeSpec(t, v.spec(t)); !reflect.DeepEqual(want, spec) {
				t.Errorf("inspect(vector) = %v\nwant %v", want, spec)
			}
			r := tokenCmd(t, "", "verify", "--certificate-file", certFile, v.Token)
			if mustOK(t, r) != "signed by "+certFile+"\n" {
				t.Errorf("verify printed %q", r.stdout)
			}
		})
	}
}

func TestTokenBuildInspectRoundTrip(t *testing.T) {
	clearEnv(t)
	certFile := writeCert(t, "cert", testCert, 0o600)
	specs := map[string]string{
		"rtc account publisher": `{"version":"007","app_id":"` + testAppID + `","issue_ts":1700000000,"expire":3600,"salt":99,
			"services":[{"type":"rtc","channel":"cam 42!","uid":"camera-42","privileges":{"join_channel":3600,"publish_audio_stream":600,"publish_video_stream":600,"publish_data_stream":60}}]}`,
		"rtc uid 0": `{"version":"007","app_id":"` + testAppID + `","issue_ts":1,"expire":1,"salt":1,
			"services":[{"type":"rtc","channel":"c","uid":"","privileges":{"join_channel":1}}]}`,
		"every type": `{"version":"007","app_id":"` + testAppID + `","issue_ts":1700000000,"expire":86400,"salt":99999999,"services":[
			{"type":"rtc","channel":"ch","uid":"7","privileges":{"join_channel":10}},
			{"type":"rtm","user_id":"u","privileges":{"login":20}},
			{"type":"streaming","channel":"ch","account":"a","privileges":{"publish_mix_stream":30}},
			{"type":"streaming","channel":"ch","account":"b","privileges":{"publish_raw_stream":31}},
			{"type":"streaming","channel":"ch2","account":"","privileges":{"publish_mix_stream":32,"publish_raw_stream":33}},
			{"type":"fpa","privileges":{"login":40}},
			{"type":"chat","user_id":"","privileges":{"app":50}},
			{"type":"fcdn","channel":"ch","account":"a","privileges":{"publish":60,"play":61}},
			{"type":"apaas","room_uuid":"room","user_uuid":"user","role":2,"privileges":{"room_user":70}},
			{"type":"rtm2","user_id":"u2","privileges":{"login":80},"permissions":[{"resource_type":0,"permission_type":1,"resources":["m1","m2"]},{"resource_type":4,"permission_type":0,"resources":["x"]}]},
			{"type":"convoai","privileges":{"1":90}},
			{"type":"stt","privileges":{"2":100}}]}`,
	}
	for name, spec := range specs {
		t.Run(name, func(t *testing.T) {
			tok := strings.TrimSpace(mustOK(t, tokenCmd(t, "", "build", "--certificate-file", certFile, spec)))
			got := decodeJSON(t, mustOK(t, tokenCmd(t, "", "inspect", tok)))
			if want := normalizeSpec(t, spec); !reflect.DeepEqual(got, want) {
				t.Errorf("inspect(build(spec)) =\n%v\nwant\n%v", got, want)
			}
		})
	}
	t.Run("inspect output builds the same token", func(t *testing.T) {
		tok := strings.TrimSpace(mustOK(t, tokenCmd(t, "", "build", "--certificate-file", certFile, specs["every type"])))
		js := mustOK(t, tokenCmd(t, "", "inspect", tok))
		again := strings.TrimSpace(mustOK(t, tokenCmd(t, js, "build", "--certificate-file", certFile)))
		if again != tok {
			t.Errorf("build(inspect(token)) = %s, want %s", again, tok)
		}
	})
}

func TestTokenBuildFillsIssueTsSaltAndAppID(t *testing.T) {
	clearEnv(t)
	certFile := writeCert(t, "cert", testCert, 0o600)
	spec := `{"expire":600,"services":[{"type":"rtm","user_id":"u","privileges":{"login":600}}]}`
	if r := tokenCmd(t, "", "build", "--certificate-file", certFile, spec); r.code != 2 || !strings.Contains(r.stderr, "no App ID") {
		t.Fatalf("spec without app_id and no --app-id: exit %d, %q", r.code, r.stderr)
	}
	t.Setenv(envAppID, testAppID)
	before := time.Now().Unix()
	tok := strings.TrimSpace(mustOK(t, tokenCmd(t, "", "build", "--certificate-file", certFile, spec)))
	after := time.Now().Unix()
	p, err := accesstoken.Parse(tok)
	if err != nil {
		t.Fatal(err)
	}
	if int64(p.IssueTs) < before || int64(p.IssueTs) > after {
		t.Errorf("issue_ts %d not in [%d, %d]", p.IssueTs, before, after)
	}
	if p.Salt == 0 || p.AppID != testAppID {
		t.Errorf("salt %d, app id %q", p.Salt, p.AppID)
	}
	tok2 := strings.TrimSpace(mustOK(t, tokenCmd(t, "", "build", "--certificate-file", certFile, spec)))
	if p2, _ := accesstoken.Parse(tok2); p2 == nil || p2.Salt == p.Salt {
		t.Errorf("two builds got the same salt")
	}
	withApp := `{"app_id":"` + testAppID + `","expire":600,"services":[]}`
	r := tokenCmd(t, "", "build", "--certificate-file", certFile, "--app-id", strings.Repeat("a", 32), withApp)
	if r.code != 2 || !strings.Contains(r.stderr, "differs from --app-id") {
		t.Errorf("conflicting app ids: exit %d, %q", r.code, r.stderr)
	}
}

func TestTokenBuildSpecSources(t *testing.T) {
	clearEnv(t)
	certFile := writeCert(t, "cert", testCert, 0o600)
	spec := `{"app_id":"` + testAppID + `","issue_ts":1700000000,"expire":600,"salt":5,"services":[{"type":"fpa","privileges":{"login":600}}]}`
	specFile := filepath.Join(t.TempDir(), "spec.json")
	if err := os.WriteFile(specFile, []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	want := mustOK(t, tokenCmd(t, "", "build", "--certificate-file", certFile, spec))
	for name, r := range map[string]result{
		"file":        tokenCmd(t, "", "build", "--certificate-file", certFile, specFile),
		"stdin":       tokenCmd(t, spec, "build", "--certificate-file", certFile, "-"),
		"stdin dflt":  tokenCmd(t, spec, "build", "--certificate-file", certFile),
		"flags after": tokenCmd(t, "", "build", spec, "--certificate-file", certFile),
	} {
		if got := mustOK(t, r); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}

func TestTokenBuildBadSpecs(t *testing.T) {
	clearEnv(t)
	certFile := writeCert(t, "cert", testCert, 0o600)
	head := `{"app_id":"` + testAppID + `","issue_ts":1,"expire":600,"salt":1,`
	for _, tc := range []struct{ name, spec, want string }{
		{"empty", "", "spec is empty"},
		{"not json", "{nope", "spec:"},
		{"array", "[]", "spec:"},
		{"trailing", head + `"services":[]} {}`, "data after the JSON object"},
		{"unknown top key", head + `"servcies":[]}`, `"servcies"`},
		{"unknown type", head + `"services":[{"type":"video","privileges":{}}]}`, `"video"`},
		{"unknown privilege", head + `"services":[{"type":"rtm","user_id":"u","privileges":{"logon":1}}]}`, `"logon"`},
		{"key of other type", head + `"services":[{"type":"rtm","channel":"c","privileges":{"login":1}}]}`, `"channel"`},
		{"expire too long", head + `"services":[{"type":"rtm","user_id":"u","privileges":{"login":86401}}]}`, "86401"},
		{"token expire zero", `{"app_id":"` + testAppID + `","expire":0,"services":[]}`, "token expire"},
		{"bad channel", head + `"services":[{"type":"rtc","channel":"a/b","uid":"","privileges":{"join_channel":1}}]}`, "channel name"},
		{"bad app id", `{"app_id":"xyz","expire":1,"services":[]}`, "app id"},
		{"bad version", `{"version":"006","app_id":"` + testAppID + `","expire":1,"services":[]}`, `"006"`},
		{"missing file", "no-such-spec.json", "no-such-spec.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"build", "--certificate-file", certFile}
			stdin := ""
			if tc.spec == "" {
				args = append(args, "-")
			} else if strings.HasPrefix(tc.spec, "{") || strings.HasPrefix(tc.spec, "[") {
				stdin = tc.spec
			} else {
				args = append(args, tc.spec)
			}
			r := tokenCmd(t, stdin, args...)
			if r.code != 1 || r.stdout != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("stderr %q: want one line containing %q", r.stderr, tc.want)
			}
		})
	}
}

// craftToken packs and signs a token whose content is given raw, so tests
// can make tokens this codec would refuse to build.
func craftToken(t *testing.T, cert string, issueTs, salt uint32, services []byte, nServices uint16) string {
	t.Helper()
	le := binary.LittleEndian
	var content []byte
	content = le.AppendUint16(content, uint16(len(testAppID)))
	content = append(content, testAppID...)
	content = le.AppendUint32(content, issueTs)
	content = le.AppendUint32(content, 600)
	content = le.AppendUint32(content, salt)
	content = le.AppendUint16(content, nServices)
	content = append(content, services...)
	mac := func(key, msg []byte) []byte {
		h := hmac.New(sha256.New, key)
		h.Write(msg)
		return h.Sum(nil)
	}
	sig := mac(mac(le.AppendUint32(nil, salt), mac(le.AppendUint32(nil, issueTs), []byte(cert))), content)
	payload := le.AppendUint16(nil, uint16(len(sig)))
	payload = append(append(payload, sig...), content...)
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(payload)
	zw.Close()
	return accesstoken.Version + base64.StdEncoding.EncodeToString(z.Bytes())
}

// fpaService is a packed FPA service with the login privilege.
func fpaService() []byte {
	le := binary.LittleEndian
	b := le.AppendUint16(nil, uint16(accesstoken.ServiceFPA))
	b = le.AppendUint16(b, 1)
	b = le.AppendUint16(b, accesstoken.PrivLogin)
	return le.AppendUint32(b, 600)
}

// unknownService is a packed service of type 11, which no builder emits.
func unknownService() []byte {
	le := binary.LittleEndian
	b := le.AppendUint16(nil, 11)
	return le.AppendUint16(b, 0)
}

func zlibBase64(s string) string {
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write([]byte(s))
	zw.Close()
	return base64.StdEncoding.EncodeToString(z.Bytes())
}

func TestTokenInspect(t *testing.T) {
	clearEnv(t)
	tok := craftToken(t, testCert, 1763800000, 7, fpaService(), 1)
	out := mustOK(t, tokenCmd(t, "", "inspect", tok))
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	if m[fieldIssued] != "2025-11-22T08:26:40Z" || m[fieldExpires] != "2025-11-22T08:36:40Z" {
		t.Errorf("issued %v, expires %v", m[fieldIssued], m[fieldExpires])
	}
	if !strings.HasPrefix(out, "{\n  \"version\": \"007\",\n") {
		t.Errorf("not indented in schema order:\n%s", out)
	}
	compact := mustOK(t, tokenCmd(t, "", "inspect", "--compact", tok))
	want := `{"version":"007","app_id":"` + testAppID + `","issue_ts":1763800000,"expire":600,"salt":7,` +
		`"services":[{"type":"fpa","privileges":{"login":600}}],"issued":"2025-11-22T08:26:40Z","expires":"2025-11-22T08:36:40Z"}` + "\n"
	if compact != want {
		t.Errorf("compact:\n%s\nwant\n%s", compact, want)
	}
	if got := mustOK(t, tokenCmd(t, "  "+tok+"\n", "inspect", "-")); got != out {
		t.Errorf("stdin gave a different result:\n%s", got)
	}
}

func TestTokenInspectBadTokens(t *testing.T) {
	clearEnv(t)
	withTrailer := craftToken(t, testCert, 1, 1, append(fpaService(), 0xff), 1)
	for _, tc := range []struct{ name, token, want string }{
		{"empty stdin", "", ""},
		{"zero", "0", ""},
		{"version only", "007", ""},
		{"wrong version", "006eJxSYBBbsMMnKq7p9Hf", ""},
		{"bad base64", "007@@@@", ""},
		{"short zlib", "007AAAA", ""},
		{"not zlib", "007" + base64.StdEncoding.EncodeToString([]byte("hello")), ""},
		{"truncated", "007" + zlibBase64("\x20\x00abc"), ""},
		{"trailing bytes", withTrailer, ""},
		{"unknown service type", craftToken(t, testCert, 1, 1, unknownService(), 1), "11"},
		{"unknown after known", craftToken(t, testCert, 1, 1, append(fpaService(), unknownService()...), 2), "11"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			arg := tc.token
			stdin := ""
			if arg == "" {
				arg = "-"
			}
			_, perr := accesstoken.Parse(tc.token)
			if perr == nil {
				t.Fatalf("the codec accepts %q", tc.token)
			}
			r := tokenCmd(t, stdin, "inspect", arg)
			if r.code != 1 || r.stdout != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
			}
			// The codec's error, which says what is wrong, on one line.
			if want := "agora-token-issuer token inspect: " + oneLine(perr.Error()) + "\n"; r.stderr != want {
				t.Errorf("stderr %q, want %q", r.stderr, want)
			}
			if !strings.Contains(r.stderr, tc.want) {
				t.Errorf("stderr %q does not name %q", r.stderr, tc.want)
			}
		})
	}
	if r := tokenCmd(t, "", "inspect"); r.code != 2 {
		t.Errorf("inspect without a token: exit %d", r.code)
	}
	if r := tokenCmd(t, "", "inspect", "a", "b"); r.code != 2 {
		t.Errorf("inspect with two tokens: exit %d", r.code)
	}
}

func TestTokenHelp(t *testing.T) {
	clearEnv(t)
	for _, sub := range []string{"inspect", "build", "verify", "rtc", "rtm", "chat", "education", "fpa"} {
		r := tokenCmd(t, "", sub, "--help")
		if r.code != 0 || !strings.Contains(r.stderr, "Usage: agora-token-issuer token "+sub) || !strings.Contains(r.stderr, "-") {
			t.Errorf("%s --help: exit %d, stderr %q", sub, r.code, r.stderr)
		}
	}
	if r := tokenCmd(t, "", "--help"); r.code != 0 || !strings.Contains(r.stdout, "token inspect") {
		t.Errorf("token --help: exit %d, %q", r.code, r.stdout)
	}
	if r := tokenCmd(t, ""); r.code != 2 {
		t.Errorf("token: exit %d", r.code)
	}
	if r := tokenCmd(t, "", "mint"); r.code != 2 || !strings.Contains(r.stderr, `"mint"`) {
		t.Errorf("token mint: exit %d, %q", r.code, r.stderr)
	}
	if r := tokenCmd(t, "", "rtc", "--bogus"); r.code != 2 || !strings.Contains(r.stderr, "bogus") {
		t.Errorf("unknown flag: exit %d, %q", r.code, r.stderr)
	}
}
