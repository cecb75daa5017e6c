// Package charontest is a fake charon on a VICI unix socket, for the tests
// of both sides of the agent (agent/host, agent/capture): it speaks the
// wire format of strongSwan's src/libcharon/plugins/vici/README.md well
// enough to drive govici.
//
// It owns only that fake and a builder of message bodies; it must not be
// imported by code outside tests (the agent binary links no testing code).
package charontest

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/warden-ir/warden/internal/testsupport"
)

// VICI packet types.
const (
	CmdRequest      = 0
	CmdResponse     = 1
	CmdUnknown      = 2
	EventRegister   = 3
	EventUnregister = 4
	EventConfirm    = 5
	Event           = 7
)

// VICI message element types.
const (
	SectionStart = 1
	SectionEnd   = 2
	KeyValue     = 3
	ListStart    = 4
	ListItem     = 5
	ListEnd      = 6
)

// Body builds a VICI message body element by element.
type Body struct{ bytes.Buffer }

func (b *Body) name(s string) { b.WriteByte(byte(len(s))); b.WriteString(s) }

func (b *Body) value(s string) {
	_ = binary.Write(&b.Buffer, binary.BigEndian, uint16(len(s)))
	b.WriteString(s)
}

// KV adds a key-value.
func (b *Body) KV(k, v string) { b.WriteByte(KeyValue); b.name(k); b.value(v) }

// Section adds section k holding what f adds.
func (b *Body) Section(k string, f func()) {
	b.WriteByte(SectionStart)
	b.name(k)
	f()
	b.WriteByte(SectionEnd)
}

// List adds list k of items.
func (b *Body) List(k string, items ...string) {
	b.WriteByte(ListStart)
	b.name(k)
	for _, it := range items {
		b.WriteByte(ListItem)
		b.value(it)
	}
	b.WriteByte(ListEnd)
}

// WritePacket writes one length-prefixed packet; name is left out when
// empty (responses and confirmations carry none).
func WritePacket(w io.Writer, typ byte, name string, body []byte) error {
	var p bytes.Buffer
	p.WriteByte(typ)
	if name != "" {
		p.WriteByte(byte(len(name)))
		p.WriteString(name)
	}
	p.Write(body)
	if err := binary.Write(w, binary.BigEndian, uint32(p.Len())); err != nil {
		return err
	}
	_, err := w.Write(p.Bytes())
	return err
}

// Server answers the way charon does: it confirms event registrations,
// streams one list-sa event per element of SAs (to a client registered
// for them) before the response to list-sas, and answers any other command
// with Reply. It records every command's name and the top-level
// key-values of every command but list-sas.
type Server struct {
	// SAs are the list-sa event bodies, one per IKE SA.
	SAs [][]byte
	// Reply answers a command other than list-sas with a packet type and
	// body; nil answers every one with success=yes.
	Reply func(cmd string) (typ byte, body []byte)

	mu       sync.Mutex
	names    []string
	requests []map[string]string
}

// Start serves s on a fresh socket until the test ends and returns the
// socket's path.
func Start(t testing.TB, s *Server) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "charon.vici")
	testsupport.ServeUnix(t, sock, s.serve)
	return sock
}

func (s *Server) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	registered := false
	for {
		var n uint32
		if err := binary.Read(c, binary.BigEndian, &n); err != nil {
			return
		}
		pkt := make([]byte, n)
		if _, err := io.ReadFull(c, pkt); err != nil || len(pkt) < 2 {
			return
		}
		name := string(pkt[2 : 2+int(pkt[1])])
		switch pkt[0] {
		case EventRegister:
			registered = registered || name == "list-sa"
			_ = WritePacket(c, EventConfirm, "", nil)
		case EventUnregister:
			_ = WritePacket(c, EventConfirm, "", nil)
		case CmdRequest:
			s.mu.Lock()
			s.names = append(s.names, name)
			if name != "list-sas" {
				s.requests = append(s.requests, topLevelKVs(pkt[2+int(pkt[1]):]))
			}
			s.mu.Unlock()
			if name == "list-sas" {
				for _, sa := range s.SAs {
					if registered {
						_ = WritePacket(c, Event, "list-sa", sa)
					}
				}
				_ = WritePacket(c, CmdResponse, "", nil)
				continue
			}
			typ, body := s.reply(name)
			_ = WritePacket(c, typ, "", body)
		}
	}
}

func (s *Server) reply(cmd string) (byte, []byte) {
	if s.Reply != nil {
		return s.Reply(cmd)
	}
	var ok Body
	ok.KV("success", "yes")
	return CmdResponse, ok.Bytes()
}

// Recorded returns the names of the commands served so far and the
// top-level key-values of each but list-sas, in order.
func (s *Server) Recorded() ([]string, []map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.names...), append([]map[string]string(nil), s.requests...)
}

// topLevelKVs decodes the key-values of a request body (the commands the
// tests send carry no sections or lists).
func topLevelKVs(b []byte) map[string]string {
	out := map[string]string{}
	for len(b) > 0 && b[0] == KeyValue {
		k := string(b[2 : 2+int(b[1])])
		b = b[2+int(b[1]):]
		n := int(binary.BigEndian.Uint16(b))
		out[k] = string(b[2 : 2+n])
		b = b[2+n:]
	}
	return out
}
