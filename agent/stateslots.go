package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
)

// The quarantine record's two slots (saveRecord): state.0 and state.1,
// each a header — magic, sequence number, payload length, CRC-32C of the
// sequence, length and payload — then the payload (the record's JSON, so
// `tail -c +21 state.0` shows it), then whatever an earlier, longer
// payload left (ignored).
var slotNames = [2]string{"state.0", "state.1"}

const (
	slotMagic  = "WQR1"
	slotHeader = 4 + 8 + 4 + 4
	// slotMaxPayload bounds what a load reads (a record is a few KiB).
	slotMaxPayload = 16 << 20
)

var slotCRC = crc32.MakeTable(crc32.Castagnoli)

// slot is one slot file as read.
type slot struct {
	exists, valid bool
	seq           uint64
	payload       []byte
}

func readSlot(path string) (slot, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return slot{}, nil
	}
	if err != nil {
		return slot{}, err
	}
	s := slot{exists: true}
	if len(b) < slotHeader || string(b[:4]) != slotMagic {
		return s, nil
	}
	s.seq = binary.BigEndian.Uint64(b[4:12])
	n := binary.BigEndian.Uint32(b[12:16])
	sum := binary.BigEndian.Uint32(b[16:20])
	if n > slotMaxPayload || int(n) > len(b)-slotHeader {
		return s, nil
	}
	payload := b[slotHeader : slotHeader+int(n)]
	if slotChecksum(b[4:16], payload) != sum {
		return s, nil
	}
	s.valid, s.payload = true, payload
	return s, nil
}

func slotChecksum(seqLen, payload []byte) uint32 {
	return crc32.Update(crc32.Checksum(seqLen, slotCRC), slotCRC, payload)
}

// readSlots reads both slots and says which holds the newest intact
// record (-1: none).
func readSlots(dir string) ([2]slot, int, error) {
	var slots [2]slot
	newest := -1
	for i, name := range slotNames {
		s, err := readSlot(filepath.Join(dir, name))
		if err != nil {
			return slots, -1, fmt.Errorf("reading quarantine state %s: %w", name, err)
		}
		slots[i] = s
		if s.valid && (newest < 0 || s.seq > slots[newest].seq) {
			newest = i
		}
	}
	return slots, newest, nil
}

// loadSlots returns the newest intact record's payload; found is false
// when there is no slot file. Slot files none of which is intact are an
// error: the agent will not guess.
func loadSlots(dir string) (payload []byte, found bool, err error) {
	slots, newest, err := readSlots(dir)
	if err != nil {
		return nil, false, err
	}
	if newest >= 0 {
		return slots[newest].payload, true, nil
	}
	if slots[0].exists || slots[1].exists {
		return nil, false, fmt.Errorf("reading quarantine state in %s: no intact record in %s or %s (the agent will not guess whether the gateway is quarantined)", dir, slotNames[0], slotNames[1])
	}
	return nil, false, nil
}

// saveSlot writes payload into the slot that does not hold the newest
// intact record, with the next sequence number, and fdatasyncs it.
func saveSlot(dir string, payload []byte) error {
	slots, newest, err := readSlots(dir)
	if err != nil {
		return err
	}
	target, seq := 0, uint64(1)
	if newest >= 0 {
		target, seq = 1-newest, slots[newest].seq+1
	}
	buf := make([]byte, slotHeader+len(payload))
	copy(buf, slotMagic)
	binary.BigEndian.PutUint64(buf[4:12], seq)
	binary.BigEndian.PutUint32(buf[12:16], uint32(len(payload)))
	copy(buf[slotHeader:], payload)
	binary.BigEndian.PutUint32(buf[16:20], slotChecksum(buf[4:16], payload))

	path := filepath.Join(dir, slotNames[target])
	created := !slots[target].exists
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(buf, 0); err != nil {
		_ = f.Close()
		return err
	}
	if created {
		err = f.Sync() // the new file's size and blocks, then its name below
	} else {
		err = fdatasync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil || !created {
		return err
	}
	return syncDir(dir)
}
