package httpx_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"herald.dev/platform/httpx"
)

// TestIdleConnectionsAreClosed: a keep-alive connection that sends nothing
// after its request is closed by the server after IdleTimeout, and kept
// without one.
func TestIdleConnectionsAreClosed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		idle   time.Duration
		closed bool
	}{
		{"with a timeout", 150 * time.Millisecond, true},
		{"without", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := httpx.NewAppWith(httpx.AppOptions{IdleTimeout: tc.idle})
			app.Get("/ping", func(c *fiber.Ctx) error { return c.SendString("pong") })
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go app.Listener(ln)
			t.Cleanup(func() { app.Shutdown() })

			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			for i := 0; i < 2; i++ { // the second request makes it a kept-alive connection
				if _, err := io.WriteString(conn, "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			conn.SetReadDeadline(time.Now().Add(time.Second))
			_, err = br.ReadByte()
			switch {
			case tc.closed && !errors.Is(err, io.EOF):
				t.Fatalf("idle connection still open after %v: read = %v", tc.idle, err)
			case !tc.closed && !errors.Is(err, os.ErrDeadlineExceeded):
				t.Fatalf("connection without an idle timeout: read = %v, want it still open", err)
			}
		})
	}
}
