// Package bundle writes and reads the self-verifying, signed bundles that
// carry backups between a school server and a mothership by hand (USB
// sticks, "sneakernet"): a school's export to its mothership, and a
// mothership's recovery bundle for a rebuilt school server.
//
// A bundle is one stream from one signer (an ed25519 key): a header, any
// number of records (blobs and named metadata documents), and a trailer
// that counts and hashes everything before it and is signed. A stream
// without a valid trailer is truncated; a stream whose bytes do not hash to
// the trailer's hash, or whose signature does not verify, is damaged. Each
// blob's stored bytes are also checked against its ID (decompressed and
// hashed), so a bundle signed by a buggy or hostile signer still cannot
// put a blob under a wrong name. Nothing in a bundle is encrypted: the
// school's key travels sealed by pkg/offsite/kit, as a metadata record.
//
// Readers take a trust function, called with the header before any record
// is read: it decides whether this signer, this kind and this bundle ID
// (replays) are acceptable here. [Trust] makes the common one.
//
// # Format, version 1
//
// All integers are little-endian. The header:
//
//	magic   "XSBUNDLE"        8 bytes
//	version u16 = 1
//	hlen    u32               length of the header body that follows (≤ 4096)
//	id      [16]byte          random, names the bundle (and its pieces)
//	signer  [32]byte          the signer's ed25519 public key
//	created i64               Unix time in nanoseconds, 0 if unknown
//	kind    u16 len | bytes   "school" or "recovery" (≤ 32 bytes)
//	for     u16 len | bytes   a free label, e.g. the school (≤ 256 bytes)
//	base    u16 len | bytes   the receipt ID the export was computed against (≤ 256 bytes)
//
// Then records, each starting with a tag byte:
//
//	'B' type u8 | flags u8 | raw u32 | stored u32 | id [32]byte | data [stored]
//	'M' nlen u16 | dlen u32 | name [nlen] | data [dlen]
//	'T' count u64 | size u64 | hash [32]byte | signature [64]byte
//
// A blob record ('B') is a [blob.Blob]: type is a [blob.Type], flags bit 0
// says the data is a zstd frame (no other bit may be set), raw is the
// uncompressed length, id the BLAKE3-256 of the uncompressed bytes. Caps:
// stored ≤ [MaxStored], raw ≤ chunk.MaxChunkSize for chunks and for any
// compressed blob, ≤ manifest.MaxTreeSize for uncompressed trees, and an
// uncompressed blob has stored = raw. A metadata record ('M') has a name of
// 1 to [MaxMetaName] bytes of UTF-8 and at most [MaxMetaData] bytes of data.
//
// The trailer ('T') is the last record and is followed by nothing. count is
// the number of records before it, size the offset of its tag byte (the
// length of everything before it), hash the BLAKE3-256 of those size bytes,
// and signature the ed25519 signature, by signer, of
//
//	"xs-backup bundle v1\x00" | id | hash
//
// The context string keeps a bundle signature from meaning anything else
// the same key signs (the server key also signs TLS handshakes).
//
// Every length is checked against its cap before anything is allocated, so
// a hostile stream costs at most one record's cap of memory.
//
// # Pieces
//
// [CreateFiles] splits a bundle into piece files for several USB sticks,
// named "<prefix>-<id hex>-<NNN>.xsb" (NNN counts from 001). The name is
// only for people: each piece starts with a 71-byte header
//
//	magic   "XSBPIECE"        8 bytes
//	version u16 = 1
//	id      [16]byte          the bundle's ID
//	index   u32               0 for the first piece
//	flags   u8                bit 0: this is the last piece
//	plen    u64               length of the payload that follows
//	hash    [32]byte          BLAKE3-256 of the payload, then of the 39 bytes above
//
// then the payload. The payloads of pieces 0 to last, joined, are the
// bundle stream.
// [OpenFiles] therefore finds pieces by content wherever they were copied
// and under whatever name, and tells a missing, duplicated, foreign or
// truncated piece apart. Each piece is written to a temporary file, synced
// and renamed into place; the last piece is written last, so an
// interrupted export has no last piece and is refused as truncated.
package bundle
