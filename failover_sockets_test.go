package pgfast

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

// foSocketFDs counts this process's open socket descriptors (TCP or not,
// alive or killed by the kernel).
func foSocketFDs() int {
	n := 0
	for _, link := range foFDLinks() {
		if strings.HasPrefix(link, "socket:[") {
			n++
		}
	}
	return n
}

func foFDLinks() []string {
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

// foTCPEntry is one row of /proc/self/net/tcp{,6}.
type foTCPEntry struct {
	local, remote netip.AddrPort
	state         string // hex, "01" = ESTABLISHED
	inode         string
}

// foTCPTable reads the namespace's TCP sockets.
func foTCPTable() []foTCPEntry {
	var out []foTCPEntry
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
			out = append(out, foTCPEntry{local: foProcAddr(f[1]), remote: foProcAddr(f[2]), state: f[3], inode: f[9]})
		}
	}
	return out
}

// foProcAddr decodes /proc/net/tcp's "0100007F:1538" (address words in host
// byte order, little-endian here).
func foProcAddr(s string) netip.AddrPort {
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

// foOwnInodes returns the socket inodes of this process.
func foOwnInodes() map[string]bool {
	own := map[string]bool{}
	for _, link := range foFDLinks() {
		if ino, ok := strings.CutPrefix(link, "socket:["); ok {
			own[strings.TrimSuffix(ino, "]")] = true
		}
	}
	return own
}

// foEstablishedTo counts this process's established TCP connections to ip:port.
func foEstablishedTo(ip string, port int) int {
	want := netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port))
	own := foOwnInodes()
	n := 0
	for _, e := range foTCPTable() {
		if e.remote == want && e.state == "01" && own[e.inode] {
			n++
		}
	}
	return n
}

// foSocketReport lists this process's sockets for a leak report.
func foSocketReport() string {
	tcp := map[string]foTCPEntry{}
	for _, e := range foTCPTable() {
		tcp[e.inode] = e
	}
	var b bytes.Buffer
	for ino := range foOwnInodes() {
		if e, ok := tcp[ino]; ok {
			fmt.Fprintf(&b, "  inode %s: tcp %s → %s state %s\n", ino, e.local, e.remote, e.state)
		} else {
			fmt.Fprintf(&b, "  inode %s: not in the TCP table (closed by the kernel, or not TCP)\n", ino)
		}
	}
	return b.String()
}
