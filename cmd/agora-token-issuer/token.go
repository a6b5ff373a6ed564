package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"agoratokens/accesstoken"
)

const tokenUsage = `agora-token-issuer token: build, inspect and verify Agora AccessToken2 tokens

Usage:
  agora-token-issuer token inspect [--compact] TOKEN|-
  agora-token-issuer token build [--certificate-file F] [--app-id ID] [SPEC|-]
  agora-token-issuer token verify (--certificate-file F ... | --config FILE) TOKEN|-
  agora-token-issuer token rtc --channel C (--uid N | --account A) --role publisher|subscriber
                               --expire S [--privilege-expire S] [--rtm]
  agora-token-issuer token rtm --user U [--stream-channel C] --expire S
  agora-token-issuer token chat (--user U | --app) --expire S
  agora-token-issuer token education (--app | --user U | --room R --user U --role N) --expire S
  agora-token-issuer token fpa --expire S

The App ID comes from --app-id or $AGORA_APP_ID; the App Certificate from
--certificate-file (a file holding its 32 hex characters) or
$AGORA_APP_CERTIFICATE, never from a flag value. Lifetimes (S) are seconds
(3600) or Go durations (1h), at most 24h.

Run a subcommand with --help for its flags.
`

// tokenEnv is what every token subcommand works with.
type tokenEnv struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// now gives the issue time of tokens built without one.
	now func() time.Time
}

// usageError is a mistake in the command line (exit code 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error {
	return &usageError{msg: fmt.Sprintf(format, a...)}
}

// runToken runs `agora-token-issuer token SUBCOMMAND …`. Exit codes: 0 ok,
// 1 failure (bad token, no matching certificate, …), 2 usage error.
func runToken(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	env := &tokenEnv{stdin: stdin, stdout: stdout, stderr: stderr, now: time.Now}
	if len(args) == 0 {
		fmt.Fprint(stderr, tokenUsage)
		return 2
	}
	sub, rest := args[0], args[1:]
	var cmd func(*tokenEnv, []string) error
	switch sub {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, tokenUsage)
		return 0
	case "inspect":
		cmd = tokenInspect
	case "build":
		cmd = tokenBuild
	case "verify":
		cmd = tokenVerify
	case "rtc":
		cmd = tokenRTC
	case "rtm":
		cmd = tokenRTM
	case "chat":
		cmd = tokenChat
	case "education":
		cmd = tokenEducation
	case "fpa":
		cmd = tokenFPA
	default:
		fmt.Fprintf(stderr, "agora-token-issuer token: unknown subcommand %q\n\n%s", sub, tokenUsage)
		return 2
	}
	err := cmd(env, rest)
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "agora-token-issuer token %s: %v (see --help)\n", sub, err)
		return 2
	case errors.Is(err, errFlagParse):
		// The flag package has already printed the problem and the usage.
		return 2
	}
	fmt.Fprintf(stderr, "agora-token-issuer token %s: %s\n", sub, oneLine(err.Error()))
	return 1
}

// errFlagParse marks a flag error the flag package already reported.
var errFlagParse = errors.New("bad flags")

// newFlagSet returns a flag set for a token subcommand that reports to
// stderr and prints synopsis and flags on --help.
func newFlagSet(env *tokenEnv, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("token "+name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: agora-token-issuer token %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseArgs parses flags that may come before, between or after the
// positional arguments (`verify TOKEN --certificate-file F` works too) and
// returns the positional ones. After "--" everything is positional.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errFlagParse
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// isSet reports whether flag name was given on the command line.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// lifetime is a flag value holding seconds: "3600" or a Go duration "1h".
type lifetime struct {
	secs uint32
	set  bool
}

func (l *lifetime) String() string {
	if l == nil || !l.set {
		return ""
	}
	return strconv.FormatUint(uint64(l.secs), 10)
}

func (l *lifetime) Set(s string) error {
	secs, err := parseLifetime(s)
	if err != nil {
		return err
	}
	l.secs, l.set = secs, true
	return nil
}

// parseLifetime reads seconds ("3600") or a whole-second Go duration
// ("1h", "90m") and checks Agora's range 1..86400.
func parseLifetime(s string) (uint32, error) {
	var secs int64
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		secs = n
	} else {
		d, derr := time.ParseDuration(s)
		if derr != nil {
			return 0, fmt.Errorf("%q is neither seconds nor a duration like 1h", s)
		}
		if d%time.Second != 0 {
			return 0, fmt.Errorf("%q is not a whole number of seconds", s)
		}
		secs = int64(d / time.Second)
	}
	if secs < 1 || secs > accesstoken.MaxExpire {
		return 0, fmt.Errorf("%q is outside 1s..24h (1..%d seconds)", s, accesstoken.MaxExpire)
	}
	return uint32(secs), nil
}

// readArg returns a positional argument's text, or stdin's when it is "-",
// with surrounding whitespace removed; at most max bytes are read.
func readArg(env *tokenEnv, arg, what string, max int64) (string, error) {
	if arg != "-" {
		return strings.TrimSpace(arg), nil
	}
	b, err := io.ReadAll(io.LimitReader(env.stdin, max+1))
	if err != nil {
		return "", fmt.Errorf("read %s from stdin: %w", what, err)
	}
	if int64(len(b)) > max {
		return "", fmt.Errorf("%s on stdin is longer than %d bytes", what, max)
	}
	return strings.TrimSpace(string(b)), nil
}

// oneLine keeps an error message on one line.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}
