package socket_test

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"agoratokens/agent/socket"
	"agoratokens/agent/socket/sockettest"
)

// BenchmarkGet: one get round trip on a kept-open connection.
func BenchmarkGet(b *testing.B) {
	src := sockettest.NewSource("cam-42", nil)
	src.Issue("video", "007eJxTYPgv0", time.Hour)
	srv, _ := sockettest.Serve(b, socket.Config{Logger: slog.New(slog.DiscardHandler)}, src)
	c, err := net.Dial("unix", srv.Path())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	req := []byte(`{"op":"get","name":"video"}` + "\n")
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := r.ReadSlice('\n'); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFanOut: one renewal delivered to every watcher.
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{1, 32} {
		b.Run(fmt.Sprintf("watchers=%d", n), func(b *testing.B) {
			src := sockettest.NewSource("cam-42", nil)
			src.Issue("video", "007eJxTYPgv0", time.Hour)
			srv, _ := sockettest.Serve(b, socket.Config{MaxClients: n, QueueLen: 1024}, src)
			readers := make([]*bufio.Reader, n)
			for i := range readers {
				c, err := net.Dial("unix", srv.Path())
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				io.WriteString(c, `{"op":"watch"}`+"\n")
				readers[i] = bufio.NewReader(c)
				readers[i].ReadSlice('\n') // watching
				readers[i].ReadSlice('\n') // the current token
			}
			b.ResetTimer()
			i := 0
			for b.Loop() {
				i++
				src.Issue("video", fmt.Sprintf("007eJxTYPgv%d", i), time.Hour)
				var wg sync.WaitGroup
				for _, r := range readers {
					wg.Go(func() {
						if _, err := r.ReadSlice('\n'); err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
			}
		})
	}
}
