package agent

import (
	"context"
	"log/slog"
	"sort"
	"testing"
	"time"
)

// BenchmarkStartToFirstToken measures the time from engine start (New +
// Run, empty state dir) to the first token event, with mosquitto and a
// fake issuer on loopback: connect, subscribe, request, reply, checks.
// The broker has the shipped config's set_tcp_nodelay (see startBroker).
// Reports p50 and p95 alongside ns/op.
//
//	go test -run '^$' -bench StartToFirstToken -benchtime 50x ./agent/
func BenchmarkStartToFirstToken(b *testing.B) {
	br := startBroker(b)
	startIssuer(b, br.URL, 600)
	var lat []time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		cfg := mqttConfig(b, br.URL, b.TempDir())
		b.StartTimer()
		start := time.Now()
		e, err := New(cfg, Deps{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		ev, _ := e.Subscribe()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		select {
		case got := <-ev:
			if got.Kind != EventToken || got.Name != "video" {
				b.Fatalf("first event %s %q, want a token for video", got.Kind, got.Name)
			}
		case <-time.After(waitLimit):
			b.Fatal("no token")
		}
		lat = append(lat, time.Since(start))
		b.StopTimer()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*95/100].Microseconds())/1000, "p95-ms")
}
