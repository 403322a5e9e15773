// Package netx is pgfast's network layer: the dialer, the address book and
// the health of the sockets it makes. The root package uses it through a
// small API and never reaches into its state.
//
//   - The dialer (dialer.go, resolve.go) resolves a host on every dial and
//     races its addresses (RFC 8305), applying the DSN's TCP options.
//   - The book (book.go) holds each address's latest outcome, generation and
//     open sockets; it orders hosts and evicts on host-level evidence.
//   - Every socket the dialer makes is tracked (socket.go): its I/O errors
//     are judged by the dead-peer rule (deadpeer.go), which the watcher also
//     applies to sockets waiting on a silent peer; checkout.go checks an idle
//     socket before database/sql reuses it.
//   - platform.go says what each OS lets pgfast apply; sys_*.go hold how.
//
// The event flow: socket → evidence (classify) → the book (evict, sweep) →
// the root's state owner (the onEvict callback) → readiness.
package netx
