package pgtest

import (
	"errors"
	"net"
	"sync"
)

// handedOut remembers the ports this process already picked, so that two
// servers created in quick succession never get the same port.
var (
	handedOutMu sync.Mutex
	handedOut   = map[int]bool{}
)

// freePort asks the kernel for an unused TCP port on 127.0.0.1.
func freePort() (int, error) {
	handedOutMu.Lock()
	defer handedOutMu.Unlock()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		if err := l.Close(); err != nil {
			return 0, err
		}
		if !handedOut[port] {
			handedOut[port] = true
			return port, nil
		}
	}
	return 0, errors.New("pgtest: could not find a free TCP port")
}
