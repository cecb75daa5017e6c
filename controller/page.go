package controller

import (
	"context"
	"fmt"
	"time"
)

// Page is a call to a person.
type Page struct {
	// Key makes repeated pages for the same event one delivery.
	Key   string
	Title string
	Text  string
}

// Pager calls a person (chat, phone bridge). It is best effort: a page that
// cannot be delivered is logged, never allowed to block intake.
type Pager interface {
	Page(ctx context.Context, p Page) error
}

func breakerPage(at time.Time, reason string) Page {
	return Page{
		Key:   "breaker/" + at.UTC().Format(time.RFC3339Nano),
		Title: "Warden circuit breaker tripped: automatic containment stopped",
		Text: fmt.Sprintf("%s. Every automatic action now waits for a person. Look at the incidents, approve what must run "+
			"(warden runs list --state awaiting_approval), and reset the breaker when it is safe (warden breaker reset --reason ...).", reason),
	}
}

func (c *core) queuePage(p Page) {
	c.pageMu.Lock()
	c.pages = append(c.pages, p)
	c.pageMu.Unlock()
}

// flushPages sends pages queued by a committed transaction, in the
// background so intake answers without waiting for a chat server.
func (c *core) flushPages(ctx context.Context) {
	c.pageMu.Lock()
	pages := c.pages
	c.pages = nil
	c.pageMu.Unlock()
	if len(pages) == 0 {
		return
	}
	if c.opt.Pager == nil {
		for _, p := range pages {
			c.log.Error("no pager configured; a person must be told", "title", p.Title, "text", p.Text)
		}
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		for _, p := range pages {
			if err := c.opt.Pager.Page(pctx, p); err != nil {
				c.log.Error("paging a person", "title", p.Title, "err", err)
			}
		}
	}()
}
