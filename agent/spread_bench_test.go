package agent

import (
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkFleetRenewalSpread simulates, with the pure drawRenewal and
// decide, 10,000 agents on 1 h tokens (renew_before 30 s, the default
// renew_window) that got their tokens in the same second, and reports how
// evenly they renew: the busiest second against the mean over the
// seconds that see renewals, for the first and the second cycle; and,
// after ten hours, a 10-minute fleet-wide power cut: the requests at
// boot, and the busiest second of the renewals after it. One iteration
// is one whole simulation; the figures are in docs/agent.md.
//
//	go test -run '^$' -bench FleetRenewalSpread -benchtime 1x ./agent/
func BenchmarkFleetRenewalSpread(b *testing.B) {
	const agents = 10_000
	const life, before = time.Hour, 30 * time.Second
	w := RenewWindow{DefaultRenewWindowStart, DefaultRenewWindowEnd}
	t0 := time.Now()
	for range b.N {
		cycle := [2]map[int64]int{{}, {}}
		const cutAt = 10 * time.Hour
		cuts := []time.Duration{10 * time.Minute, 45 * time.Minute}
		bootRequests := make([]int, len(cuts))
		afterCut := []map[int64]int{{}, {}}
		// A 10-minute broker outage from cutAt instead of the power cut:
		// the renewals that fall due during it, how many go out at the
		// reconnection (all agents reconnecting in the same second, the
		// worst case), and when the others go.
		held, heldAtOnce, afterOutage := 0, 0, map[int64]int{}
		for i := range agents {
			rnd := rand.New(rand.NewPCG(uint64(i), 42))
			recv := t0
			for n := 0; ; n++ {
				at := drawRenewal(rnd.Float64(), w, life, before, 0)
				sent := recv.Add(at)
				if a := decide(sent, recv, life, before, at, time.Time{}, 0); !a.Request || a.WillExpire {
					b.Fatalf("agent %d: decide at the drawn point = %+v, want a request without will_expire", i, a)
				}
				if n < 2 {
					cycle[n][int64(sent.Sub(t0)/time.Second)]++
				}
				if sent.Sub(t0) >= cutAt {
					if back := t0.Add(cutAt + 10*time.Minute); sent.Before(back) {
						held++
						at := drawRenewal(rnd.Float64(), w, life, before, back.Sub(recv))
						if a := decide(back, recv, life, before, at, time.Time{}, 0); a.Request {
							heldAtOnce++
						} else {
							afterOutage[int64(recv.Add(at).Sub(back)/time.Second)]++
						}
					}
					break
				}
				recv = sent // the reply comes at once
			}
			// The power went at cutAt: recv is the last token received.
			for c, cutFor := range cuts {
				boot := t0.Add(cutAt + cutFor)
				age := boot.Sub(recv)
				if age >= life {
					bootRequests[c]++ // expired during the cut: asked for at boot
					continue
				}
				at := drawRenewal(rnd.Float64(), w, life, before, age)
				if a := decide(boot, recv, life, before, at, time.Time{}, 0); a.Request {
					bootRequests[c]++
					continue
				}
				afterCut[c][int64(recv.Add(at).Sub(boot)/time.Second)]++
			}
		}
		// Before renew_window, every agent renewed renew_before ahead of
		// expiry: the whole fleet in one second, every hour.
		b.Logf("fixed renewal point (before renew_window): peak %d/s, in second %v of each hour", agents,
			latestRenewal(life, before))
		for n, c := range cycle {
			peak, mean, span := evenness(c)
			b.Logf("cycle %d: peak %d/s, mean %.1f/s over %d s (peak/mean %.2f)", n+1, peak, mean, span, float64(peak)/mean)
			if n == 0 {
				b.ReportMetric(float64(peak), "peak/s")
				b.ReportMetric(mean, "mean/s")
			}
		}
		peak, mean, span := evenness(afterOutage)
		b.Logf("10-minute broker outage: %d renewals fall due during it; %d go out at the reconnection, the rest peak %d/s, mean %.1f/s over %d s",
			held, heldAtOnce, peak, mean, span)
		b.ReportMetric(float64(held), "held-by-outage")
		b.ReportMetric(float64(peak), "after-outage-peak/s")
		for c, cutFor := range cuts {
			peak, mean, span := evenness(afterCut[c])
			b.Logf("%v power cut: %d requests at boot (tokens expired during the cut); then peak %d/s, mean %.1f/s over %d s",
				cutFor, bootRequests[c], peak, mean, span)
			if c == 0 {
				b.ReportMetric(float64(bootRequests[c]), "boot-requests")
				b.ReportMetric(float64(peak), "after-cut-peak/s")
			}
		}
	}
}

// evenness is the busiest second of a histogram (second → count), the
// mean per second from its first to its last second, and that span.
func evenness(h map[int64]int) (peak int, mean float64, span int64) {
	first, last, total := int64(-1), int64(-1), 0
	for s, n := range h {
		peak = max(peak, n)
		total += n
		if first < 0 || s < first {
			first = s
		}
		last = max(last, s)
	}
	if total == 0 {
		return 0, 0, 0
	}
	span = last - first + 1
	return peak, float64(total) / float64(span), span
}
