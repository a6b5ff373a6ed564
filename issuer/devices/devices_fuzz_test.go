package devices

import (
	"bytes"
	"strings"
	"testing"

	"agoratokens/configfile/configfiletest"
)

// FuzzParse: the credentials parser never panics, its errors name no Go
// type, and a file it accepts survives a write and a second parse with
// the same devices and hashes.
func FuzzParse(f *testing.F) {
	f.Add([]byte("version: 1\ndevices:\n  - name: cam-1\n    hash: sha256:" + strings.Repeat("ab", 32) + "\n    created: 2025-11-22T08:00:00Z\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		file, err := Parse(bytes.NewReader(src))
		if err != nil {
			configfiletest.CheckWording(t, err)
			return
		}
		var b bytes.Buffer
		if _, err := file.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		again, err := Parse(&b)
		if err != nil {
			t.Fatalf("written file does not parse: %v\n%s", err, b.String())
		}
		a, c := file.Devices(), again.Devices()
		if len(a) != len(c) {
			t.Fatalf("%d devices, %d after a round trip", len(a), len(c))
		}
		for i := range a {
			if a[i].Name != c[i].Name || a[i].hash != c[i].hash || !a[i].Created.Equal(c[i].Created) {
				t.Fatalf("device %d: %+v, after a round trip %+v", i, a[i], c[i])
			}
		}
	})
}
