package pgfast

import "github.com/lib/pq"

// refusedTLS reports whether err itself is lib/pq's error for a server that
// refuses the TLS sslmode requires.
func (*pqAdapter) refusedTLS(err error) bool { return err == pq.ErrSSLNotSupported }
