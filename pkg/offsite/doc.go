// Package offsite copies a school server's backups to a mothership and
// brings a dead school server back from it.
//
// Three flows share one walk (Replicate) and one rule: only blobs the
// mothership lacks for this school are sent, children before the directory
// that names them, and a snapshot becomes visible there only whole.
//
//   - Network (Sync): the school server connects to the mothership with its
//     own server key, as a laptop connects to it; the mothership's staff
//     approve the school once. Each snapshot is committed with its origin
//     (laptop, ID, time), so the mothership keeps it under the school's
//     account with the school's identity, applies its own retention to each
//     laptop's history, and never loses a snapshot the school deleted. An
//     interrupted run resumes: what arrived is held by the school there.
//   - Sneakernet (Export, Import): a signed bundle (package bundle) of what
//     the mothership lacks according to the last receipt, split for several
//     USB sticks; the mothership verifies the whole bundle before anything
//     of it becomes visible and writes a signed Receipt that goes back.
//   - Recovery (MakeKit, ExportRecovery, Recover): the server key, sealed
//     with a passphrase that only the school's staff keep (package kit),
//     travels in the school's registry (its laptops, keys and settings,
//     replicated as a snapshot of origin user 0); the mothership writes a
//     recovery bundle, and Recover rebuilds the server with the same key,
//     every registration and every snapshot.
//
// Privacy across schools is the store's privacy between laptops: a school
// is one account on the mothership, Need answers only for what that
// account holds, and its usage counts its own data.
package offsite
