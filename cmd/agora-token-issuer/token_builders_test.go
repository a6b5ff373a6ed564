package main

import (
	"crypto/md5"
	"encoding/hex"
	"flag"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"agoratokens/accesstoken"
)

// parseBuilt parses a built token, checks it verifies with testCert and
// was issued now, and returns it.
func parseBuilt(t *testing.T, out string) *accesstoken.Token {
	t.Helper()
	if !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
		t.Fatalf("want one token line, got %q", out)
	}
	tok, err := accesstoken.Parse(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Verify(testCert); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if d := time.Now().Unix() - int64(tok.IssueTs); d < 0 || d > 60 {
		t.Errorf("issue_ts %d is not now", tok.IssueTs)
	}
	if tok.AppID != testAppID || tok.Salt == 0 {
		t.Errorf("app id %q, salt %d", tok.AppID, tok.Salt)
	}
	return tok
}

// TestTokenConvenienceBuilders checks that each subcommand's flags reach
// the matching accesstoken.Builder method: the token it prints carries
// the same services and expiry as the method's, and verifies.
func TestTokenConvenienceBuilders(t *testing.T) {
	clearEnv(t)
	t.Setenv(envAppID, testAppID)
	cert := writeCert(t, "cert", testCert+"\n", 0o600)
	for _, tc := range []struct {
		name   string
		args   []string
		oracle func(b *accesstoken.Builder) (string, error)
	}{
		{"rtc uid publisher", []string{"rtc", "--channel", "cam-42", "--uid", "2882341273", "--role", "publisher", "--expire", "3600"},
			func(b *accesstoken.Builder) (string, error) {
				return b.RTCWithUID("cam-42", 2882341273, accesstoken.RolePublisher, 3600, 3600)
			}},
		{"rtc uid 0 subscriber", []string{"rtc", "--channel", "cam-42", "--uid", "0", "--role", "subscriber", "--expire", "1h", "--privilege-expire", "10m"},
			func(b *accesstoken.Builder) (string, error) {
				return b.RTCWithUID("cam-42", 0, accesstoken.RoleSubscriber, 3600, 600)
			}},
		{"rtc any channel", []string{"rtc", "--channel", "*", "--uid", "7", "--role", "subscriber", "--expire", "600"},
			func(b *accesstoken.Builder) (string, error) {
				return b.RTCWithUID("*", 7, accesstoken.RoleSubscriber, 600, 600)
			}},
		{"rtc account with rtm", []string{"rtc", "--channel", "c", "--account", "alice", "--role", "publisher", "--expire", "600", "--rtm"},
			func(b *accesstoken.Builder) (string, error) {
				return b.RTCAndRTM("c", "alice", accesstoken.RolePublisher, 600, 600)
			}},
		{"rtm", []string{"rtm", "--user", "u1", "--expire", "86400"},
			func(b *accesstoken.Builder) (string, error) { return b.RTM("u1", "", 86400) }},
		{"rtm stream channel", []string{"rtm", "--user", "u1", "--stream-channel", "sc", "--expire", "60"},
			func(b *accesstoken.Builder) (string, error) { return b.RTM("u1", "sc", 60) }},
		{"chat user", []string{"chat", "--user", "bob", "--expire", "60"},
			func(b *accesstoken.Builder) (string, error) { return b.ChatUser("bob", 60) }},
		{"chat app", []string{"chat", "--app", "--expire", "60"},
			func(b *accesstoken.Builder) (string, error) { return b.ChatApp(60) }},
		{"education app", []string{"education", "--app", "--expire", "60"},
			func(b *accesstoken.Builder) (string, error) { return b.EducationApp(60) }},
		{"education user", []string{"education", "--user", "user-1", "--expire", "60"},
			func(b *accesstoken.Builder) (string, error) { return b.EducationUser("user-1", 60) }},
		{"education room user", []string{"education", "--room", "room-1", "--user", "user-1", "--role", "2", "--expire", "60"},
			func(b *accesstoken.Builder) (string, error) { return b.EducationRoomUser("room-1", "user-1", 2, 60) }},
		{"fpa", []string{"fpa", "--expire", "60"},
			func(b *accesstoken.Builder) (string, error) { return b.FPA(60) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(tc.args, "--certificate-file", cert)
			got := parseBuilt(t, mustOK(t, tokenCmd(t, "", args...)))
			b := &accesstoken.Builder{AppID: testAppID, Certificate: testCert}
			s, err := tc.oracle(b)
			if err != nil {
				t.Fatal(err)
			}
			want, err := accesstoken.Parse(s)
			if err != nil {
				t.Fatal(err)
			}
			if got.Expire != want.Expire || len(got.Services) == 0 || !reflect.DeepEqual(got.Services, want.Services) {
				t.Errorf("expire %d, services\n%+v\nwant expire %d, services\n%+v", got.Expire, got.Services, want.Expire, want.Services)
			}
		})
	}
	// What the flags mean, independently of the builder: a room-user
	// token carries the room user, RTM login as the user and a Chat user
	// whose id is the MD5 of the user uuid.
	out := mustOK(t, tokenCmd(t, "", "education", "--room", "r", "--user", "user-1", "--role", "1", "--expire", "60", "--certificate-file", cert))
	tok := parseBuilt(t, out)
	sum := md5.Sum([]byte("user-1"))
	apaas, rtm, chat := tok.Service(accesstoken.ServiceAPaaS), tok.Service(accesstoken.ServiceRTM), tok.Service(accesstoken.ServiceChat)
	if apaas == nil || apaas.RoomUUID != "r" || apaas.UserUUID != "user-1" || apaas.Role != 1 ||
		rtm == nil || rtm.UserID != "user-1" || chat == nil || chat.UserID != hex.EncodeToString(sum[:]) {
		t.Errorf("room-user token services: %+v", tok.Services)
	}
}

func TestTokenConvenienceBuilderErrors(t *testing.T) {
	clearEnv(t)
	t.Setenv(envAppID, testAppID)
	cert := writeCert(t, "cert", testCert, 0o600)
	c := []string{"--certificate-file", cert}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"rtc no channel", []string{"rtc", "--uid", "1", "--role", "publisher", "--expire", "1"}, 2, "--channel is required"},
		{"rtc bad channel", []string{"rtc", "--channel", "a/b", "--uid", "1", "--role", "publisher", "--expire", "1"}, 1, "--channel"},
		{"rtc long channel", []string{"rtc", "--channel", strings.Repeat("c", 65), "--uid", "1", "--role", "publisher", "--expire", "1"}, 1, "max 64"},
		{"rtc uid and account", []string{"rtc", "--channel", "c", "--uid", "1", "--account", "a", "--role", "publisher", "--expire", "1"}, 2, "exactly one of --uid and --account"},
		{"rtc neither", []string{"rtc", "--channel", "c", "--role", "publisher", "--expire", "1"}, 2, "exactly one of --uid and --account"},
		{"rtc bad uid", []string{"rtc", "--channel", "c", "--uid", "4294967296", "--role", "publisher", "--expire", "1"}, 2, "--uid"},
		{"rtc empty account", []string{"rtc", "--channel", "c", "--account", "", "--role", "publisher", "--expire", "1"}, 2, "--account is empty"},
		{"rtc long account", []string{"rtc", "--channel", "c", "--account", strings.Repeat("a", 256), "--role", "publisher", "--expire", "1"}, 1, "max 255"},
		{"rtc no role", []string{"rtc", "--channel", "c", "--uid", "1", "--expire", "1"}, 2, "--role is required"},
		{"rtc bad role", []string{"rtc", "--channel", "c", "--uid", "1", "--role", "admin", "--expire", "1"}, 2, `"admin"`},
		{"rtc no expire", []string{"rtc", "--channel", "c", "--uid", "1", "--role", "publisher"}, 2, "--expire is required"},
		{"rtc expire too long", []string{"rtc", "--channel", "c", "--uid", "1", "--role", "publisher", "--expire", "86401"}, 2, "--expire"},
		{"rtc expire zero", []string{"rtc", "--channel", "c", "--uid", "1", "--role", "publisher", "--expire", "0"}, 2, "outside 1s..24h"},
		{"rtc rtm uid 0", []string{"rtc", "--channel", "c", "--uid", "0", "--role", "publisher", "--expire", "1", "--rtm"}, 2, "--rtm"},
		{"rtc extra arg", []string{"rtc", "extra", "--channel", "c", "--uid", "1", "--role", "publisher", "--expire", "1"}, 2, `"extra"`},
		{"rtm no user", []string{"rtm", "--expire", "1"}, 2, "--user is required"},
		{"chat both", []string{"chat", "--app", "--user", "u", "--expire", "1"}, 2, "exactly one of --user and --app"},
		{"chat neither", []string{"chat", "--expire", "1"}, 2, "exactly one of --user and --app"},
		{"education app and user", []string{"education", "--app", "--user", "u", "--expire", "1"}, 2, "--app takes none"},
		{"education room without role", []string{"education", "--room", "r", "--user", "u", "--expire", "1"}, 2, "go together"},
		{"education role without room", []string{"education", "--user", "u", "--role", "1", "--expire", "1"}, 2, "go together"},
		{"education room without user", []string{"education", "--room", "r", "--role", "1", "--expire", "1"}, 2, "give --app, --user"},
		{"education role range", []string{"education", "--room", "r", "--user", "u", "--role", "40000", "--expire", "1"}, 2, "40000"},
		{"fpa extra arg", []string{"fpa", "--expire", "1", "now"}, 2, `"now"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tokenCmd(t, "", append(tc.args, c...)...)
			if r.code != tc.code || r.stdout != "" || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d (want %d), stdout %q, stderr %q (want %q)", r.code, tc.code, r.stdout, r.stderr, tc.want)
			}
		})
	}
}

func TestTokenEnvironment(t *testing.T) {
	clearEnv(t)
	cert := writeCert(t, "cert", testCert, 0o600)
	other := writeCert(t, "other", otherCert, 0o600)
	fpa := []string{"fpa", "--expire", "60"}

	if r := tokenCmd(t, "", append(fpa, "--certificate-file", cert)...); r.code != 2 || !strings.Contains(r.stderr, "AGORA_APP_ID") {
		t.Errorf("no app id: exit %d, %q", r.code, r.stderr)
	}
	parseBuilt(t, mustOK(t, tokenCmd(t, "", append(fpa, "--certificate-file", cert, "--app-id", testAppID)...)))

	t.Setenv(envAppID, testAppID)
	if r := tokenCmd(t, "", fpa...); r.code != 2 || !strings.Contains(r.stderr, "AGORA_APP_CERTIFICATE") {
		t.Errorf("no certificate: exit %d, %q", r.code, r.stderr)
	}
	t.Setenv(envCertificate, " "+testCert+"\n")
	parseBuilt(t, mustOK(t, tokenCmd(t, "", fpa...)))

	// --certificate-file wins over the environment.
	out := mustOK(t, tokenCmd(t, "", append(fpa, "--certificate-file", other)...))
	tok, err := accesstoken.Parse(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	if i, err := tok.Verify(testCert, otherCert); err != nil || i != 1 {
		t.Errorf("signed by certificate %d (%v), want the file's", i, err)
	}
	// --app-id wins over the environment.
	appB := strings.Repeat("b", 32)
	out = mustOK(t, tokenCmd(t, "", append(fpa, "--app-id", appB)...))
	if tok, _ := accesstoken.Parse(strings.TrimSpace(out)); tok == nil || tok.AppID != appB {
		t.Errorf("app id from env beat --app-id: %v", tok)
	}

	t.Setenv(envCertificate, "not-a-certificate")
	if r := tokenCmd(t, "", fpa...); r.code != 1 || !strings.Contains(r.stderr, "$AGORA_APP_CERTIFICATE must be 32 hex") {
		t.Errorf("bad env certificate: exit %d, %q", r.code, r.stderr)
	}
	t.Setenv(envCertificate, testCert)
	t.Setenv(envAppID, "xyz")
	if r := tokenCmd(t, "", fpa...); r.code != 1 || !strings.Contains(r.stderr, "$AGORA_APP_ID") {
		t.Errorf("bad env app id: exit %d, %q", r.code, r.stderr)
	}
}

// TestCertificateNeverPrinted runs every subcommand, good and bad, with a
// known certificate and checks that it shows up in no output.
func TestCertificateNeverPrinted(t *testing.T) {
	clearEnv(t)
	t.Setenv(envAppID, testAppID)
	cert := writeCert(t, "cert", testCert, 0o644) // also triggers the mode warning
	long := writeCert(t, "long", testCert+"f", 0o600)
	bad := writeCert(t, "bad", testCert[:31]+"z", 0o600)
	tok := strings.TrimSpace(mustOK(t, tokenCmd(t, "", "fpa", "--expire", "60", "--certificate-file", cert)))
	spec := mustOK(t, tokenCmd(t, "", "inspect", tok))
	runs := [][]string{
		{"inspect", tok},
		{"build", "--certificate-file", cert, spec},
		{"build", "--certificate-file", long, spec},
		{"build", "--certificate-file", bad, spec},
		{"build", "--certificate-file", cert, `{"app_id":"` + testAppID + `","expire":0}`},
		{"verify", "--certificate-file", cert, tok},
		{"verify", "--certificate-file", long, "--certificate-file", cert, tok},
		{"verify", "--certificate-file", bad, tok},
		{"rtc", "--channel", "c", "--uid", "1", "--role", "publisher", "--expire", "60", "--certificate-file", cert},
		{"rtc", "--channel", "c/", "--uid", "1", "--role", "publisher", "--expire", "60", "--certificate-file", cert},
		{"rtm", "--user", "u", "--expire", "60", "--certificate-file", long},
		{"chat", "--app", "--expire", "60", "--certificate-file", bad},
		{"education", "--app", "--expire", "60", "--certificate-file", cert},
		{"fpa", "--expire", "60", "--certificate-file", cert},
	}
	check := func(args []string, r result) {
		t.Helper()
		for _, s := range []string{r.stdout, r.stderr} {
			ls := strings.ToLower(s)
			for _, secret := range []string{testCert, testCert[:31]} {
				if strings.Contains(ls, strings.ToLower(secret)) {
					t.Errorf("%v printed the certificate: %q", args, s)
				}
			}
		}
	}
	for _, args := range runs {
		check(args, tokenCmd(t, "", args...))
	}
	for _, v := range []string{testCert, testCert + "0", "g" + testCert[1:]} {
		t.Setenv(envCertificate, v)
		for _, args := range [][]string{{"fpa", "--expire", "60"}, {"verify", tok}, {"build", spec}} {
			check(args, tokenCmd(t, "", args...))
		}
	}
}

func TestParseLifetime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint32
		err  string
	}{
		{"1", 1, ""},
		{"3600", 3600, ""},
		{"86400", 86400, ""},
		{"1h", 3600, ""},
		{"24h", 86400, ""},
		{"90m", 5400, ""},
		{"0", 0, "outside"},
		{"-5", 0, "outside"},
		{"86401", 0, "outside"},
		{"25h", 0, "outside"},
		{"1.5s", 0, "whole number"},
		{"soon", 0, "neither seconds nor a duration"},
		{"99999999999999999999", 0, "neither"},
	} {
		got, err := parseLifetime(tc.in)
		if tc.err == "" && (err != nil || got != tc.want) {
			t.Errorf("parseLifetime(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
		if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("parseLifetime(%q) error %v; want %q", tc.in, err, tc.err)
		}
	}
}

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		pos  []string
		v    string
	}{
		{[]string{"a", "--v", "x", "b"}, []string{"a", "b"}, "x"},
		{[]string{"--v", "x", "-"}, []string{"-"}, "x"},
		{[]string{"a", "--", "--v", "b"}, []string{"a", "--v", "b"}, ""},
		{nil, nil, ""},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		v := fs.String("v", "", "")
		pos, err := parseArgs(fs, tc.args)
		if err != nil || !reflect.DeepEqual(pos, tc.pos) || *v != tc.v {
			t.Errorf("parseArgs(%q) = %q, v=%q, %v; want %q, v=%q", tc.args, pos, *v, err, tc.pos, tc.v)
		}
	}
}
