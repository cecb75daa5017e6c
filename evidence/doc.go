// Package evidence keeps what Warden collects from a compromised gateway —
// volatile captures, snapshot references, configuration before and after,
// logs — as content-addressed blobs with a chain-of-custody record
// (safety invariants 4 and 5; 証拠保全).
//
// Blobs go through a seam, BlobStore, keyed by their SHA-256, so the same
// content is stored once and a blob's name is its own integrity check. The
// implementation here, FileBlobs, keeps them under DIR/sha256/ab/abcdef…
// (files 0400, directories 0700), written atomically (temporary file,
// fsync, rename); with several controller replicas DIR is storage they all
// mount. Metadata lives in two tables this package owns (evidence and
// custody, see Schema) in the store's database (SQLite or PostgreSQL), and
// every custody event (collected, stored,
// accessed, exported, verified) is also an audit entry appended in the same
// transaction, so the hash-chained audit proves who touched what and when.
//
// The package owns the blob layout, the two tables, name sanitising, the
// verifying reader, Verify and the tar.gz export (files + SHA256SUMS in
// sha256sum -c format + manifest.json + the full audit chain). It must not
// decide what to collect or when (that is the actions' and controller's
// business), must never put artefact content into audit entries, logs or
// errors (only names, hashes and sizes), and must never modify or delete a
// stored blob.
package evidence
