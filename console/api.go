package console

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/warden-ir/warden/api/client"
)

// inProcess is the base URL of the console's API client: its requests
// never leave the process.
const inProcess = "http://warden.in-process"

// api is the API's Go client acting as the signed-in person: each request
// is served in-process by the API's own handlers, as that person
// (API.AsPrincipal), so the console acts exactly as the CLI does with the
// person's token. The client insists on a token; the placeholder it sends
// is dropped by AsPrincipal.
func (rq *request) api() *client.Client {
	h := rq.c.opt.API.AsPrincipal(rq.sess.p)
	c, err := client.New(inProcess, "in-process", client.WithHTTPClient(&http.Client{Transport: handlerTransport{h}}))
	if err != nil {
		// Only a malformed base URL or an empty token fail, and both are
		// constants here.
		panic("console: building the in-process API client: " + err.Error())
	}
	return c
}

// handlerTransport answers a request with a handler, in this goroutine.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := &recorder{header: http.Header{}}
	t.h.ServeHTTP(rec, r)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return &http.Response{
		Status: strconv.Itoa(rec.status) + " " + http.StatusText(rec.status), StatusCode: rec.status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: rec.header, Body: io.NopCloser(bytes.NewReader(rec.body.Bytes())), ContentLength: int64(rec.body.Len()), Request: r,
	}, nil
}

// recorder keeps a handler's answer.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *recorder) Header() http.Header { return w.header }
func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(b)
}
func (w *recorder) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

// refusal is the status and message of the API's answer to show a
// person, or ok=false when err is not the API's answer (the console's own
// failure: a 500).
func refusal(err error) (status int, msg string, ok bool) {
	var ce *client.Error
	if !errors.As(err, &ce) {
		return 0, "", false
	}
	return ce.StatusCode, ce.Message, true
}

// acted answers a form whose action the API refused: the page again, with
// the API's status and reason; a failure of the console's own is a 500.
func (rq *request) acted(err error, again func(status int, msg string)) {
	status, msg, ok := refusal(err)
	if !ok {
		rq.internal("acting through the API", err)
		return
	}
	again(status, rq.t("refused", msg))
}
