package sensors

import "strings"

// AuthRecord is what one sshd or charon message says about an
// authentication, for readers of logs other than the watcher (an
// investigation reading a window of the journal).
type AuthRecord struct {
	// Service is "sshd" or "ike".
	Service string
	// Outcome is "failure" or "success".
	Outcome string
	User    string
	// Source is the peer's address, or its name when the line names no
	// address; empty when the line says neither (a charon failure whose
	// packet line is elsewhere).
	Source string
	Method string
}

// ParseAuthMessage reads a message of sshd (ident sshd or sshd-session)
// or charon (charon, charon-systemd; its thread prefix may still be on
// the message) with the watcher's own parsers. ok is false for a message
// that is no authentication result.
func ParseAuthMessage(ident, msg string) (AuthRecord, bool) {
	var ev authEvent
	switch ident {
	case "sshd", "sshd-session":
		ev = parseSSHD(msg)
	case "charon", "charon-systemd":
		if m := reCharonPrefix.FindStringSubmatch(msg); m != nil {
			msg = msg[len(m[0]):]
		}
		ev = parseCharon(msg)
	default:
		return AuthRecord{}, false
	}
	r := AuthRecord{Service: ev.Service, User: ev.User, Method: ev.Method, Source: ev.SourceName}
	if ev.Source.IsValid() {
		r.Source = ev.Source.String()
	}
	switch ev.Kind {
	case authFailure, authFailedSession:
		r.Outcome = "failure"
	case authSuccess:
		r.Outcome = "success"
	default:
		return AuthRecord{}, false
	}
	return r, true
}

// DecodeJournalMessage decodes a journal entry's MESSAGE as journalctl -o
// json writes it: a string, or an array of bytes when it is not valid
// UTF-8; ok is false for null (too large) and anything else.
func DecodeJournalMessage(raw []byte) (string, bool) { return journalMessage(raw) }

// SplitSyslogLine finds the syslog tag (ident[pid]:) of a classic log
// line and returns what precedes it (the timestamp and host), the
// identifier and the message.
func SplitSyslogLine(line string) (head, ident, msg string, ok bool) {
	line = strings.TrimRight(line, "\r\n")
	m := reSyslogTag.FindStringSubmatchIndex(line)
	if m == nil {
		return "", "", "", false
	}
	return strings.TrimSpace(line[:m[2]]), line[m[2]:m[3]], line[m[1]:], true
}
