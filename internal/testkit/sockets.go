package testkit

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// SocketFDs counts this process's open socket descriptors (TCP or not,
// alive or killed by the kernel).
func SocketFDs() int {
	n := 0
	for _, link := range fdLinks() {
		if strings.HasPrefix(link, "socket:[") {
			n++
		}
	}
	return n
}

// fdLinks lists the targets of this process's file descriptors.
func fdLinks() []string {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	var links []string
	for _, e := range entries {
		if link, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil {
			links = append(links, link)
		}
	}
	return links
}

// TCPEntry is one row of /proc/self/net/tcp{,6}.
type TCPEntry struct {
	local, remote netip.AddrPort
	state         string // hex, "01" = ESTABLISHED
	inode         string
}

// TCPTable reads the namespace's TCP sockets.
func TCPTable() []TCPEntry {
	var out []TCPEntry
	for _, path := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for i, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if i == 0 || len(f) < 10 {
				continue
			}
			out = append(out, TCPEntry{local: procAddr(f[1]), remote: procAddr(f[2]), state: f[3], inode: f[9]})
		}
	}
	return out
}

// procAddr decodes /proc/net/tcp's "0100007F:1538" (address words in host
// byte order, little-endian here).
func procAddr(s string) netip.AddrPort {
	hexAddr, hexPort, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}
	}
	raw, err := hex.DecodeString(hexAddr)
	port, perr := strconv.ParseUint(hexPort, 16, 16)
	if err != nil || perr != nil || len(raw)%4 != 0 {
		return netip.AddrPort{}
	}
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.LittleEndian.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port))
}

// ownInodes returns the socket inodes of this process.
func ownInodes() map[string]bool {
	own := map[string]bool{}
	for _, link := range fdLinks() {
		if ino, ok := strings.CutPrefix(link, "socket:["); ok {
			own[strings.TrimSuffix(ino, "]")] = true
		}
	}
	return own
}

// EstablishedTo counts this process's established TCP connections to ip:port.
func EstablishedTo(ip string, port int) int {
	want := netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port))
	own := ownInodes()
	n := 0
	for _, e := range TCPTable() {
		if e.remote == want && e.state == "01" && own[e.inode] {
			n++
		}
	}
	return n
}

// SocketReport lists this process's sockets for a leak report.
func SocketReport() string {
	tcp := map[string]TCPEntry{}
	for _, e := range TCPTable() {
		tcp[e.inode] = e
	}
	var b bytes.Buffer
	for ino := range ownInodes() {
		if e, ok := tcp[ino]; ok {
			fmt.Fprintf(&b, "  inode %s: tcp %s → %s state %s\n", ino, e.local, e.remote, e.state)
		} else {
			fmt.Fprintf(&b, "  inode %s: not in the TCP table (closed by the kernel, or not TCP)\n", ino)
		}
	}
	return b.String()
}
