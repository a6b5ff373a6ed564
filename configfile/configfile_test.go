package configfile

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

type sample struct {
	TTL    time.Duration `yaml:"ttl"`
	Names  []string      `yaml:"names"`
	Limits struct {
		Max   int     `yaml:"max"`
		Ratio float64 `yaml:"ratio"`
	} `yaml:"limits"`
	Items []struct {
		Name string    `yaml:"name"`
		At   time.Time `yaml:"at"`
	} `yaml:"items"`
	On bool `yaml:"on"`
}

func TestDecodeErrorsNameKeyAndLine(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"unknown top key", "ttl: 1s\ncolour: red\n", `colour (line 2): unknown key "colour"`},
		{"unknown nested key", "limits:\n  max: 1\n  maxx: 2\n", `limits.maxx (line 3): unknown key "maxx"`},
		{"unknown key in flow mapping", "limits: {max: 1, mxa: 2}\n", `limits.mxa (line 1): unknown key "mxa"`},
		{"unknown key in list item", "items:\n  - name: a\n    nmae: b\n", `items[0].nmae (line 3): unknown key "nmae"`},
		{"bad duration", "ttl: soon\n", `ttl (line 1): "soon" is not a duration such as 30s, 5m or 1h`},
		{"int duration", "ttl: 3600\n", `ttl (line 1): "3600" is not a duration`},
		{"list for string", "names: [[a]]\n", `names[0] (line 1): a list is not a string`},
		{"string for list", "names: x\n", `names (line 1): "x" is not a list`},
		{"scalar for mapping", "limits: 3\n", `limits (line 1): "3" is not a mapping of keys`},
		{"flow pick by value", "limits: {max: 1, ratio: lots}\n", `limits.ratio (line 1): "lots" is not a number`},
		{"bool", "on: maybe\n", `on (line 1): "maybe" is not true or false`},
		{"time", "items:\n  - name: a\n    at: yesterday\n", `items[0].at (line 3): "yesterday" is not a time`},
		{"twice", "ttl: 1s\nttl: 2s\n", `ttl (line 2): "ttl" is given twice (first on line 1)`},
		{"syntax", "names: [\n", `line 1: not valid YAML`},
		{"second document", "ttl: 1s\n---\nttl: 2s\n", `line 2: a second YAML document`},
		{"not a mapping", "- a\n", `a list is not a mapping of keys`},
		{"key with a space", "ttl: 1s\n0 0: x\n", `0 0 (line 2): unknown key "0 0"`},
		{"scalar over lines", "0\n\n0", `line 1: "0\n0" is not a mapping of keys`},
		{"custom tag", "ttl: !x 5\n", `ttl (line 1): "5" is not a duration`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v sample
			_, err := Decode([]byte(tc.src), &v)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			for _, goName := range []string{"time.Duration", "float64", "[]string", "configfile", "struct", "!!"} {
				if strings.Contains(err.Error(), goName) {
					t.Errorf("error names a Go type or YAML tag (%s): %v", goName, err)
				}
			}
		})
	}
}

func TestDecodeSeveralErrors(t *testing.T) {
	var v sample
	_, err := Decode([]byte("ttl: soon\nnames: x\n"), &v)
	if err == nil || !strings.Contains(err.Error(), "ttl (line 1)") || !strings.Contains(err.Error(), "names (line 2)") {
		t.Fatalf("err = %v, want both problems", err)
	}
}

func TestDecodeEmpty(t *testing.T) {
	for _, src := range []string{"", "# only a comment\n", "\n\n"} {
		var v sample
		_, err := Decode([]byte(src), &v)
		if !errors.Is(err, ErrEmpty) || err.Error() != "file is empty" {
			t.Errorf("%q: err = %v, want ErrEmpty", src, err)
		}
	}
}

func TestDecodeOK(t *testing.T) {
	var v sample
	keys, err := Decode([]byte("ttl: 30s\nlimits:\n  max: 3\nitems:\n  - name: a\n"), &v)
	if err != nil {
		t.Fatal(err)
	}
	if v.TTL != 30*time.Second || v.Limits.Max != 3 || len(v.Items) != 1 {
		t.Fatalf("decoded %+v", v)
	}
	for path, line := range map[string]int{"ttl": 1, "limits": 2, "limits.max": 3, "items[0]": 5, "items[0].name": 5, "nope": 0} {
		if got := keys.Line(path); got != line {
			t.Errorf("Line(%q) = %d, want %d", path, got, line)
		}
	}
}

var errSentinel = errors.New("sentinel")

func TestLocate(t *testing.T) {
	var v sample
	keys, err := Decode([]byte("ttl: 30s\nlimits:\n  max: 3\n"), &v)
	if err != nil {
		t.Fatal(err)
	}
	err = keys.Locate(errors.Join(
		fmt.Errorf("limits.max: 3 is not between 5 and 9"),
		fmt.Errorf("limits.ratio: missing"), // not in the file: no line
		fmt.Errorf("ttl: %w", errSentinel),
		errors.New("no key here"),
	))
	want := "limits.max (line 3): 3 is not between 5 and 9\nlimits.ratio: missing\nttl (line 1): sentinel\nno key here"
	if err.Error() != want {
		t.Fatalf("got\n%s\nwant\n%s", err, want)
	}
	if !errors.Is(err, errSentinel) {
		t.Error("Locate hides the original error from errors.Is")
	}
	if keys.Locate(nil) != nil {
		t.Error("Locate(nil) is not nil")
	}
}
