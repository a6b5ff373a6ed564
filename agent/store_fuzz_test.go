package agent

import (
	"bytes"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseSaved feeds the state file reader arbitrary content: it must
// never panic nor read past the limit, and whatever it accepts is a token
// of the asked name that passes the checks and reads back the same after
// being written again. Seeds are in testdata/fuzz/FuzzParseSaved.
func FuzzParseSaved(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := parseSaved(bytes.NewReader(data), "video")
		if len(data) > maxStateFile && err == nil {
			t.Fatalf("accepted %d bytes, over the %d-byte limit", len(data), maxStateFile)
		}
		if err != nil {
			if st != nil {
				t.Fatal("a token returned with an error")
			}
			return
		}
		if st.Grant.Name != "video" || st.V != stateVersion {
			t.Fatalf("accepted a file for %q version %d", st.Grant.Name, st.V)
		}
		if err := checkGrant(&st.Grant); err != nil {
			t.Fatalf("accepted a grant that fails the checks: %v", err)
		}
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseSaved(bytes.NewReader(b), "video")
		if err != nil {
			t.Fatalf("a token written back does not read: %v", err)
		}
		if *again != *st {
			t.Fatalf("read back %+v, want %+v", again, st)
		}
	})
}

// The committed seed of a good state file is accepted, so the fuzzer
// starts from a file that reaches every check.
func TestParseSavedGoodSeed(t *testing.T) {
	b, err := os.ReadFile("testdata/fuzz/FuzzParseSaved/good")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(string(b), "\n", 3)
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	if err != nil {
		t.Fatalf("seed is not in the corpus format: %v", err)
	}
	if _, err := parseSaved(strings.NewReader(s), "video"); err != nil {
		t.Fatalf("good seed rejected: %v", err)
	}
}
