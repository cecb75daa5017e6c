package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
)

// A batch of records is kept in the chain by one entry carrying the
// Merkle root of its records' hashes (leaves): each record stays
// verifiable on its own, by a proof of membership (the sibling hashes on
// its path to the root). Leaves and inner nodes are hashed with distinct
// prefixes (RFC 6962), and an odd node is carried up unpaired, so that no
// leaf can pass for an inner node nor a tree for another.

// MerkleLeaf is the leaf hash of a record's canonical bytes.
func MerkleLeaf(record []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(record)
	return [32]byte(h.Sum(nil))
}

func merkleNode(l, r [32]byte) [32]byte {
	h := sha256.New()
	h.Write([]byte{1})
	h.Write(l[:])
	h.Write(r[:])
	return [32]byte(h.Sum(nil))
}

// MerkleRoot is the root over leaves (the zero hash for none).
func MerkleRoot(leaves [][32]byte) [32]byte {
	if len(leaves) == 0 {
		return [32]byte{}
	}
	level := leaves
	for len(level) > 1 {
		level = merkleUp(level)
	}
	return level[0]
}

// merkleUp is the level above level: its nodes paired, an odd last one
// carried up.
func merkleUp(level [][32]byte) [][32]byte {
	next := make([][32]byte, 0, (len(level)+1)/2)
	for i := 0; i < len(level); i += 2 {
		if i+1 == len(level) {
			next = append(next, level[i])
			continue
		}
		next = append(next, merkleNode(level[i], level[i+1]))
	}
	return next
}

// ProofStep is one sibling on a leaf's path to the root.
type ProofStep struct {
	// Left says the sibling is on the left.
	Left bool   `json:"left"`
	Hash string `json:"hash"`
}

// MerkleProof is the path of leaves[i] to the root.
func MerkleProof(leaves [][32]byte, i int) ([]ProofStep, error) {
	if i < 0 || i >= len(leaves) {
		return nil, errors.New("audit: no such leaf")
	}
	var out []ProofStep
	level := leaves
	for len(level) > 1 {
		if sib := i ^ 1; sib < len(level) {
			out = append(out, ProofStep{Left: sib < i, Hash: hex.EncodeToString(level[sib][:])})
		}
		level, i = merkleUp(level), i/2
	}
	return out, nil
}

// VerifyMerkleProof reports whether leaf with proof makes root (hex).
func VerifyMerkleProof(leaf [32]byte, proof []ProofStep, root string) bool {
	h := leaf
	for _, s := range proof {
		b, err := hex.DecodeString(s.Hash)
		if err != nil || len(b) != 32 {
			return false
		}
		if s.Left {
			h = merkleNode([32]byte(b), h)
		} else {
			h = merkleNode(h, [32]byte(b))
		}
	}
	return hex.EncodeToString(h[:]) == root
}
