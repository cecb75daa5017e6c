package console

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// keepAlive is how long a live stream may stay silent before it sends a
// comment, so that proxies do not take it for dead.
const keepAlive = 15 * time.Second

// stream wraps a live endpoint (server-sent events). It needs a session;
// without one it answers 204 No Content, which tells the browser's
// EventSource to stop reconnecting: the page's next load asks for sign-in.
func (c *Console) stream(h func(*request)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rq := c.request(w, r)
		if !rq.signedIn() {
			// No session, or none the store could check now: either way
			// the browser stops; the page's next load says which.
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h(rq)
	})
}

// follow streams a live region: each time version changes from the one
// the page was drawn at (?since=, or the Last-Event-ID the browser sends
// when it reconnects), an "update" event carries the region's new HTML,
// which console.js puts in place. It ends when the browser goes, when the
// session ends (a "signedout" event: the page reloads into the sign-in)
// or when the server shuts down (Close). Every change to what a live page
// shows is audited in the transaction that makes it, so the version is the
// newest audit entry of what the page follows.
func (rq *request) follow(version func() (int64, error), render func() (string, error)) {
	w := rq.w
	flusher, ok := w.(http.Flusher)
	if !ok {
		rq.internal("streaming", fmt.Errorf("the response writer cannot flush"))
		return
	}
	seen := parseSeq(rq.r.Header.Get("Last-Event-ID"))
	if seen < 0 {
		seen = parseSeq(rq.r.URL.Query().Get("since"))
	}
	// The server's write timeout is for answers, not for a stream that
	// lasts as long as the page is open.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()

	c := rq.c
	var quiet time.Duration
	for {
		switch signedIn, err := c.stillSignedIn(rq); {
		case err != nil:
			// The store could not say: follow on, and look again next
			// time.
			c.opt.Log.Warn("console: cannot check a live page's session", "err", err)
		case !signedIn:
			fmt.Fprint(w, "event: signedout\ndata: \n\n")
			flusher.Flush()
			return
		}
		v, err := version()
		if err != nil {
			c.opt.Log.Error("console: following a live page", "path", rq.r.URL.Path, "err", err)
			return
		}
		if v != seen {
			html, err := render()
			if err != nil {
				c.opt.Log.Error("console: drawing a live page", "path", rq.r.URL.Path, "err", err)
				return
			}
			writeEvent(w, v, html)
			flusher.Flush()
			seen, quiet = v, 0
		} else if quiet >= keepAlive {
			fmt.Fprint(w, ": still here\n\n")
			flusher.Flush()
			quiet = 0
		}
		select {
		case <-rq.ctx.Done():
			return
		case <-c.done:
			return
		case <-c.opt.Clock.After(c.opt.LiveInterval):
			quiet += c.opt.LiveInterval
		}
	}
}

// stillSignedIn looks the stream's session up again: one that expired, or
// whose person was disabled meanwhile, ends the stream.
func (c *Console) stillSignedIn(rq *request) (bool, error) {
	s, err := c.findSession(rq)
	return s != nil && s.hash == rq.sess.hash, err
}

// writeEvent writes one "update" event; each line of html is a data line.
func writeEvent(w http.ResponseWriter, id int64, html string) {
	var b strings.Builder
	fmt.Fprintf(&b, "id: %d\nevent: update\n", id)
	for _, line := range strings.Split(strings.ReplaceAll(html, "\r", ""), "\n") {
		b.WriteString("data: ")
		b.WriteString(line)
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	_, _ = w.Write([]byte(b.String()))
}

// parseSeq reads a version a browser sent back (-1 when absent or
// malformed).
func parseSeq(s string) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}
