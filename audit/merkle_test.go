package audit

import (
	"encoding/hex"
	"fmt"
	"testing"
)

// Every leaf of trees of every small size proves its membership, and no
// leaf proves with another's path or against another root.
func TestMerkleProofs(t *testing.T) {
	for n := 1; n <= 17; n++ {
		leaves := make([][32]byte, n)
		for i := range leaves {
			leaves[i] = MerkleLeaf(fmt.Appendf(nil, "record %d", i))
		}
		r := MerkleRoot(leaves)
		root := hex.EncodeToString(r[:])
		for i := range leaves {
			p, err := MerkleProof(leaves, i)
			if err != nil {
				t.Fatal(err)
			}
			if !VerifyMerkleProof(leaves[i], p, root) {
				t.Fatalf("n=%d: leaf %d does not prove", n, i)
			}
			if VerifyMerkleProof(MerkleLeaf([]byte("edited")), p, root) {
				t.Fatalf("n=%d: an edited leaf %d proves", n, i)
			}
			if n > 1 && VerifyMerkleProof(leaves[(i+1)%n], p, root) {
				t.Fatalf("n=%d: leaf %d proves with leaf %d's path", n, (i+1)%n, i)
			}
		}
	}
}
