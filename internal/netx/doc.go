// Package netx is pgfast's network layer: the dialer, the address book and
// the health of the sockets it makes. The root package (the connector, its
// state owner and the backend adapters) uses it through a small API and
// never reaches into its state.
//
//   - The dialer (dialer.go, resolve.go) resolves a host on every dial and
//     races its addresses (RFC 8305), applying the DSN's TCP options to each
//     socket before connect().
//   - The book (book.go) holds a connector's view of every address: its
//     latest outcome, its generation, its open sockets; it orders hosts and
//     addresses and evicts a generation on host-level evidence.
//   - Every socket the dialer makes is a tracked socket (socket.go): it sees
//     its own I/O errors and has them judged by the dead-peer rule
//     (deadpeer.go), which the process-wide watcher also applies to sockets
//     waiting for a silent peer; the checkout check (checkout.go) looks at
//     an idle socket before database/sql reuses it.
//   - platform.go says what each operating system lets pgfast apply
//     (PlatformOf), and sys_*.go hold how: the liveness peek, TCP_INFO,
//     setting and reading socket options.
//
// The event flow: socket → evidence (classify) → the book (evict, sweep) →
// the root's state owner (the onEvict callback) → readiness.
package netx
