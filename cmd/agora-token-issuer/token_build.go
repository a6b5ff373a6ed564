package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"agoratokens/accesstoken"
)

// maxSpec bounds a build spec; a real one is well under a kilobyte.
const maxSpec = 1 << 20

func tokenBuild(env *tokenEnv, args []string) error {
	fs := newFlagSet(env, "build", "build [--certificate-file F] [--app-id ID] [SPEC|-]\n\n"+
		"Sign a token from a JSON spec in the schema `token inspect` prints.\n"+
		"SPEC is the JSON itself (starting with '{'), a file name, or - (the\n"+
		"default) for stdin. issue_ts and salt may be left out (now, random);\n"+
		"app_id may be left out when --app-id or $AGORA_APP_ID gives it; a\n"+
		"salt of 0 means random. "+
		"\"issued\" and \"expires\" are ignored.\n"+
		"The certificate comes from --certificate-file or $AGORA_APP_CERTIFICATE.")
	certFile := fs.String("certificate-file", "", "`file` holding the App Certificate (32 hex characters)")
	appIDFlag := fs.String("app-id", "", "App `ID` for a spec without app_id (default $AGORA_APP_ID)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("want at most one SPEC, got %d arguments", len(pos))
	}
	src := "-"
	if len(pos) == 1 {
		src = pos[0]
	}
	spec, err := readSpec(env, src)
	if err != nil {
		return err
	}
	t, err := decodeSpec(spec)
	if err != nil {
		return err
	}
	if t.AppID == "" {
		if t.AppID, err = appID(*appIDFlag, true); err != nil {
			return err
		}
	} else if f := strings.TrimSpace(*appIDFlag); f != "" && f != t.AppID {
		return usagef("spec app_id %s differs from --app-id %s", t.AppID, f)
	}
	cert, err := signingCertificate(*certFile, env.stderr)
	if err != nil {
		return err
	}
	b := accesstoken.Builder{Certificate: cert.cert, Now: env.now}
	s, err := b.Sign(t)
	if err != nil {
		return fmt.Errorf("build token: %w", err)
	}
	_, err = fmt.Fprintln(env.stdout, s)
	return err
}

// readSpec reads the spec from stdin ("-"), the argument itself when it is
// JSON, or the file it names.
func readSpec(env *tokenEnv, src string) ([]byte, error) {
	if src == "-" {
		s, err := readArg(env, src, "spec", maxSpec)
		return []byte(s), err
	}
	if strings.HasPrefix(strings.TrimSpace(src), "{") {
		return []byte(src), nil
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSpec+1))
	if err != nil {
		return nil, fmt.Errorf("read spec %s: %w", src, err)
	}
	if len(b) > maxSpec {
		return nil, fmt.Errorf("spec %s is larger than %d bytes", src, maxSpec)
	}
	return b, nil
}

// decodeSpec turns a JSON spec into a token to sign. The codec's decoder
// is strict (unknown keys and names are errors); the only keys taken off
// first are inspect's derived "issued" and "expires".
func decodeSpec(spec []byte) (*accesstoken.Token, error) {
	if len(bytes.TrimSpace(spec)) == 0 {
		return nil, fmt.Errorf("spec is empty")
	}
	clean, err := withoutHumanFields(spec)
	if err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	var t accesstoken.Token
	if err := json.Unmarshal(clean, &t); err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	return &t, nil
}

// withoutHumanFields copies a JSON object without its top-level "issued"
// and "expires" members, keeping the others byte for byte and in order so
// that the codec still sees duplicates and exact key spellings.
func withoutHumanFields(spec []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(spec))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("want a JSON object")
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key := tok.(string) // object keys are always strings
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		if key == fieldIssued || key == fieldExpires {
			continue
		}
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(key) // marshalling a string cannot fail
		b.Write(k)
		b.WriteByte(':')
		b.Write(val)
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("data after the JSON object")
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
