// Package proto is the wire protocol between laptops and a school server:
// QUIC (github.com/quic-go/quic-go) with mutual TLS 1.3, each side known by
// an ed25519 key the other pinned at registration (trust on first use, as
// SSH does). It has the laptop's [Client] and the server's [Server]; the
// server reaches the store only through the [Backend] interface it
// declares, so this package does not depend on pkg/store.
//
// # Connections and requests
//
// A laptop registers on its own ALPN ([ALPNRegister]): it sends its serial
// and nickname, the server records the key from the handshake and answers
// with its own, which the laptop pins. Every later connection uses
// [ALPNBackup] and is refused unless its key belongs to a registered,
// approved laptop. Each request runs on its own bidirectional stream as a
// sequence of frames (frame.go): length, type, payload; control messages
// are JSON, the hot paths (which blobs are needed, blob uploads and
// fetches) are binary. Every frame type has a size cap checked before
// anything is allocated, and memory is reserved as bytes arrive, never for
// what a header claims.
//
// # A backup session
//
//  1. Hello: the server grants a session now or answers with a slot ("come
//     back at T"); the Grant carries the chunker parameters, the quota and
//     the blobs the laptop holds whose stored copy is damaged.
//  2. Need / Put: the laptop asks which blobs the server needs (answered
//     privately: "have" only for blobs this laptop already holds) and
//     uploads those; the server re-hashes every blob.
//  3. Commit: the root tree becomes a snapshot with a server-assigned time.
//
// [Client] implements backup.Target for steps 2–3, and fetches blobs back
// (Fetch; agent.NewSource makes it a restore.Source). Errors cross the wire as a [Kind] and a message
// ([Error]); a kind matches the sentinel errors callers branch on with
// errors.Is. Per-device limits (limits.go) and admission (admission.go)
// keep one device from taking more than its share of the server.
package proto
