package netfault

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// nftTable is the nftables table holding every rule this package installs.
const nftTable = "pgfast_fault"

// Rule describes TCP traffic to drop or reject inside the namespace. Every
// matching packet is affected, not only connection attempts (SYNs), so
// established connections stall (or are reset) as well.
//
// On loopback every packet passes both the output hook (when sent) and the
// input hook (when received), and client and server usually share the same
// addresses. Drop therefore matches packets towards the server (destination
// Addr, destination port Port) in the output chain, and packets from the
// server (source Addr, source port Port) in the input chain. With Port 0 a
// rule cannot tell server from client and affects all TCP traffic to (or
// from) Addr, including replies to clients bound to Addr.
type Rule struct {
	// Family is "ip" (IPv4), "ip6" (IPv6) or "" (both, or whichever family
	// Addr belongs to).
	Family string
	// Addr is the server's loopback address (127.0.0.0/8 or ::1); "" means
	// every loopback address of Family. It is matched as destination on
	// output and as source on input, i.e. traffic to or from that address.
	Addr string
	// Port is the server's TCP port; 0 means any. It is matched as
	// destination port on packets towards the server and as source port on
	// packets from it.
	Port int
	// Direction selects which packets are affected: "to" (only packets
	// towards Addr:Port), "from" (only packets from Addr:Port) or "both"
	// (the default, "").
	Direction string
	// Reject makes matching packets be answered with a TCP reset (the
	// sender sees "connection refused" or "connection reset") instead of
	// being dropped silently (a blackhole: the sender times out). The reset
	// goes to whoever sent the packet, so with Direction "from" it is the
	// server that is reset while the client times out. Reject rules let TCP
	// resets themselves pass.
	Reject bool
	// Percent (1–99) affects each matching packet with that probability
	// (nft numgen random), independently in each chain: random loss rather
	// than a blackhole. 0 affects every matching packet.
	Percent int
}

// nftRule is one nft rule: the chain it goes to and its expression.
type nftRule struct {
	chain string // "input" or "output"
	expr  string
}

// nftRules validates r and translates it into nft rules: one per family and
// hook. All rules match TCP only.
func (r Rule) nftRules() ([]nftRule, error) {
	var to, from bool
	switch r.Direction {
	case "", "both":
		to, from = true, true
	case "to":
		to = true
	case "from":
		from = true
	default:
		return nil, fmt.Errorf("netfault: rule direction %q: want \"to\", \"from\" or \"both\"", r.Direction)
	}
	if r.Percent < 0 || r.Percent > 99 {
		return nil, fmt.Errorf("netfault: rule percent %d: want 1–99, or 0 for every packet", r.Percent)
	}
	if r.Port < 0 || r.Port > 65535 {
		return nil, fmt.Errorf("netfault: rule port %d out of range", r.Port)
	}
	switch r.Family {
	case "", "ip", "ip6":
	default:
		return nil, fmt.Errorf("netfault: rule family %q: want \"ip\", \"ip6\" or \"\"", r.Family)
	}

	// targets lists the families to match, each with its address expression.
	type famAddr struct{ family, addr string }
	var targets []famAddr
	if r.Addr != "" {
		addr, err := parseLoopback(r.Addr)
		if err != nil {
			return nil, err
		}
		family := "ip6"
		if addr.Is4() {
			family = "ip"
		}
		if r.Family != "" && r.Family != family {
			return nil, fmt.Errorf("netfault: rule address %s is not in family %q", addr, r.Family)
		}
		targets = append(targets, famAddr{family, addr.String()})
	} else {
		if r.Family != "ip6" {
			targets = append(targets, famAddr{"ip", "127.0.0.0/8"})
		}
		if r.Family != "ip" {
			targets = append(targets, famAddr{"ip6", "::1"})
		}
	}

	verdict := "drop"
	if r.Reject {
		// Resets are let through: the reset sent to a rejected client
		// comes from the server's address and port, so the rule for the
		// other direction would swallow it. (A reset is never answered
		// with a reset, so rejecting one would just drop it.)
		verdict = "tcp flags & rst == 0 reject with tcp reset"
	}
	if r.Percent > 0 {
		// One draw per packet and chain: on loopback a packet crosses both
		// hooks, each with its own rule in its own direction.
		verdict = fmt.Sprintf("numgen random mod 100 < %d %s", r.Percent, verdict)
	}
	port := func(field string) string {
		if r.Port == 0 {
			return "meta l4proto tcp"
		}
		return fmt.Sprintf("tcp %s %d", field, r.Port)
	}

	var rules []nftRule
	for _, t := range targets {
		if to {
			rules = append(rules, nftRule{"output",
				fmt.Sprintf("%s daddr %s %s %s", t.family, t.addr, port("dport"), verdict)})
		}
		if from {
			rules = append(rules, nftRule{"input",
				fmt.Sprintf("%s saddr %s %s %s", t.family, t.addr, port("sport"), verdict)})
		}
	}
	return rules, nil
}

var (
	// nftMu serialises this process's changes to the table.
	nftMu sync.Mutex
	// nftGeneration counts Clear calls. Rule handles restart when the table
	// is recreated, so a remove function from an earlier generation must
	// not delete anything.
	nftGeneration int
)

// Drop installs r inside the namespace and returns a function that removes
// exactly the nft rules it installed. The rules live in the table
// `inet pgfast_fault`, whose input and output filter chains are created on
// first use. Calling remove again, or after [Clear], does nothing.
//
// Drop only works [Inside] a namespace created by [RunInNamespace].
func Drop(r Rule) (remove func() error, err error) {
	rules, err := r.nftRules()
	if err != nil {
		return nil, err
	}
	if err := checkInside(); err != nil {
		return nil, err
	}

	nftMu.Lock()
	defer nftMu.Unlock()
	if err := ensureTable(); err != nil {
		return nil, err
	}
	var script strings.Builder
	for _, rule := range rules {
		fmt.Fprintf(&script, "add rule inet %s %s %s\n", nftTable, rule.chain, rule.expr)
	}
	// All rules are added in one transaction; --echo --handle prints each
	// added rule followed by "# handle N".
	out, err := nft(script.String(), "--echo", "--handle", "-f", "-")
	if err != nil {
		return nil, err
	}
	handles, err := parseHandles(out)
	if err != nil || len(handles) != len(rules) {
		return nil, fmt.Errorf("netfault: cannot tell the handles of the rules just added (%v); nft printed:\n%s", err, out)
	}
	generation := nftGeneration
	removed := false
	remove = func() error {
		nftMu.Lock()
		defer nftMu.Unlock()
		if removed || generation != nftGeneration {
			return nil
		}
		var script strings.Builder
		for i, rule := range rules {
			fmt.Fprintf(&script, "delete rule inet %s %s handle %d\n", nftTable, rule.chain, handles[i])
		}
		if _, err := nft(script.String(), "-f", "-"); err != nil {
			return err
		}
		removed = true
		return nil
	}
	return remove, nil
}

// Clear deletes the whole pgfast_fault table and with it every rule
// installed by [Drop]; remove functions returned earlier become no-ops. It
// is not an error if there is no table.
//
// Clear only works [Inside] a namespace created by [RunInNamespace].
func Clear() error {
	if err := checkInside(); err != nil {
		return err
	}
	nftMu.Lock()
	defer nftMu.Unlock()
	// Adding the table first makes the deletion succeed when it is absent;
	// both happen in one transaction.
	_, err := nft(fmt.Sprintf("add table inet %[1]s\ndelete table inet %[1]s\n", nftTable), "-f", "-")
	if err != nil {
		return err
	}
	nftGeneration++
	return nil
}

// ensureTable creates the table and its two base chains unless they exist.
// Priority 0 is the standard filter priority.
func ensureTable() error {
	script := fmt.Sprintf(`add table inet %[1]s
add chain inet %[1]s input { type filter hook input priority 0; policy accept; }
add chain inet %[1]s output { type filter hook output priority 0; policy accept; }
`, nftTable)
	_, err := nft(script, "-f", "-")
	return err
}

// handleComment matches the "# handle N" that nft --echo --handle appends to
// each added rule.
var handleComment = regexp.MustCompile(`^add rule .*# handle (\d+)$`)

// parseHandles returns the handles of the rules listed in nft --echo output,
// in order.
func parseHandles(out string) ([]int, error) {
	var handles []int
	for _, line := range strings.Split(out, "\n") {
		m := handleComment.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		h, err := strconv.Atoi(m[1])
		if err != nil {
			return nil, err
		}
		handles = append(handles, h)
	}
	return handles, nil
}

// nft runs the nft command with args, feeding it stdin, and returns its
// standard output.
func nft(stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nftPath, err := lookTool("nft")
	if err != nil {
		return "", fmt.Errorf("netfault: %w", err)
	}
	cmd := exec.CommandContext(ctx, nftPath, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("netfault: nft %s: %w: %s\ninput:\n%s",
			strings.Join(args, " "), err, strings.TrimSpace(stderr.String()), stdin)
	}
	return stdout.String(), nil
}
