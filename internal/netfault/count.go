package netfault

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// CountSYN installs, ahead of every other rule of the output chain (so
// before a Drop of the same traffic), a counter of the connection attempts
// towards addr:port: packets with SYN set and ACK clear, retransmissions
// included. read returns the packets counted so far; remove deletes the
// rule (a no-op after [Clear]).
//
// CountSYN only works [Inside] a namespace created by [RunInNamespace].
func CountSYN(addr string, port int) (read func() (uint64, error), remove func() error, err error) {
	a, err := parseLoopback(addr)
	if err != nil {
		return nil, nil, err
	}
	if port <= 0 || port > 65535 {
		return nil, nil, fmt.Errorf("netfault: counter port %d out of range", port)
	}
	if err := checkInside(); err != nil {
		return nil, nil, err
	}
	family := "ip6"
	if a.Is4() {
		family = "ip"
	}
	expr := fmt.Sprintf("%s daddr %s tcp dport %d tcp flags & (syn|ack) == syn counter", family, a, port)

	nftMu.Lock()
	defer nftMu.Unlock()
	if err := ensureTable(); err != nil {
		return nil, nil, err
	}
	out, err := nft(fmt.Sprintf("insert rule inet %s output %s\n", nftTable, expr), "--echo", "--handle", "-f", "-")
	if err != nil {
		return nil, nil, err
	}
	handles := parseInsertHandles(out)
	if len(handles) != 1 {
		return nil, nil, fmt.Errorf("netfault: cannot tell the handle of the counter just added; nft printed:\n%s", out)
	}
	handle, generation := handles[0], nftGeneration
	removed := false
	read = func() (uint64, error) {
		nftMu.Lock()
		defer nftMu.Unlock()
		if removed || generation != nftGeneration {
			return 0, fmt.Errorf("netfault: the SYN counter was removed")
		}
		out, err := nft("", "-j", "list", "chain", "inet", nftTable, "output")
		if err != nil {
			return 0, err
		}
		return counterPackets(out, handle)
	}
	remove = func() error {
		nftMu.Lock()
		defer nftMu.Unlock()
		if removed || generation != nftGeneration {
			return nil
		}
		if _, err := nft(fmt.Sprintf("delete rule inet %s output handle %d\n", nftTable, handle), "-f", "-"); err != nil {
			return err
		}
		removed = true
		return nil
	}
	return read, remove, nil
}

// parseInsertHandles returns the handles nft --echo --handle prints after
// each inserted rule.
func parseInsertHandles(out string) []int {
	var handles []int
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		i := strings.LastIndex(line, "# handle ")
		if !strings.HasPrefix(line, "insert rule ") || i < 0 {
			continue
		}
		if h, err := strconv.Atoi(strings.TrimSpace(line[i+len("# handle "):])); err == nil {
			handles = append(handles, h)
		}
	}
	return handles
}

// counterPackets finds rule handle in `nft -j list chain` output and
// returns its counter's packets.
func counterPackets(out string, handle int) (uint64, error) {
	var doc struct {
		Nftables []struct {
			Rule *struct {
				Handle int                          `json:"handle"`
				Expr   []map[string]json.RawMessage `json:"expr"`
			} `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return 0, fmt.Errorf("netfault: nft -j output: %w", err)
	}
	for _, item := range doc.Nftables {
		if item.Rule == nil || item.Rule.Handle != handle {
			continue
		}
		for _, e := range item.Rule.Expr {
			if raw, ok := e["counter"]; ok {
				var c struct {
					Packets uint64 `json:"packets"`
				}
				if err := json.Unmarshal(raw, &c); err != nil {
					return 0, fmt.Errorf("netfault: counter: %w", err)
				}
				return c.Packets, nil
			}
		}
	}
	return 0, fmt.Errorf("netfault: no counter rule with handle %d", handle)
}

// SynSent returns how many sockets of the calling process's network
// namespace are in SYN-SENT towards server (/proc/net/tcp and tcp6, state
// 02, remote address = server).
func SynSent(server netip.AddrPort) (int, error) {
	n := 0
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		m, err := countSynSent(f, server)
		if err != nil {
			if os.IsNotExist(err) {
				continue // no IPv6
			}
			return 0, err
		}
		n += m
	}
	return n, nil
}

func countSynSent(path string, server netip.AddrPort) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != "02" {
			continue
		}
		remote, err := parseProcAddr(fields[2])
		if err == nil && remote == server {
			n++
		}
	}
	return n, sc.Err()
}

// parseProcAddr parses /proc/net/tcp's "0100007F:1538": the address as
// 32-bit words in host (little-endian) order, the port in hex. IPv4-mapped
// IPv6 addresses come back unmapped.
func parseProcAddr(s string) (netip.AddrPort, error) {
	host, portHex, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("netfault: bad /proc address %q", s)
	}
	raw, err := hex.DecodeString(host)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("netfault: bad /proc address %q", s)
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("netfault: bad /proc port %q", s)
	}
	for i := 0; i < len(raw); i += 4 { // each word from host order to network order
		binary.BigEndian.PutUint32(raw[i:], binary.LittleEndian.Uint32(raw[i:]))
	}
	a, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), nil
}
