package natsauth

import (
	"fmt"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// BenchmarkLoginCheck is what nats-server spends per device login on the
// password check, at the cost the hashes use and at bcrypt's default:
// the figure behind Cost (docs/broker.md).
func BenchmarkLoginCheck(b *testing.B) {
	const secret = "0123456789abcdef0123456789abcdef"
	for _, cost := range []int{Cost, bcrypt.DefaultCost} {
		h, err := bcrypt.GenerateFromPassword([]byte(secret), cost)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("cost=%d", cost), func(b *testing.B) {
			for b.Loop() {
				if err := bcrypt.CompareHashAndPassword(h, []byte(secret)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
