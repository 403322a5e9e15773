// Package timeline computes, without touching the network, how long Linux
// TCP takes to notice that the other end of a connection is gone, and the
// sequence of SYN retransmissions, keep-alive probes and data
// retransmissions that leads there.
//
// Three failures are modelled, each by a pure function of the kernel's
// settings (Kernel) and the options set on the socket (Socket):
//
//   - Connect: connect() to an address that silently drops packets.
//   - Idle: the peer dies while the connection is idle (nothing unacknowledged,
//     for instance while a query runs on the server); keep-alive finds out.
//   - Unacked: the peer dies while data (a query) is unacknowledged;
//     retransmission finds out.
//
// # Rules
//
// The rules follow the kernel's timers (net/ipv4/tcp_timer.c) and were checked
// against Linux 6.18 on loopback with nftables dropping packets.
//
// SYN phase. The first SYN is retransmitted after TCP_TIMEOUT_INIT (1s). The
// first tcp_syn_linear_timeouts retransmissions keep that interval, later
// ones double it (capped at tcp_rto_max). At each timer expiry the attempt
// fails if tcp_syn_retries + tcp_syn_linear_timeouts retransmissions were
// sent already, or if at least one was sent and the time since the first SYN
// reaches a limit: TCP_USER_TIMEOUT when set, else the time tcp_syn_retries
// exponential backoffs take ((2^(n+1)-1)s for n <= 6). With
// TCP_USER_TIMEOUT the timer is shortened so that it expires exactly at the
// limit. tcp_syn_retries=6 without linear timeouts: 1+2+4+8+16+32+64 = 127s;
// with the default tcp_syn_linear_timeouts=4 of newer kernels: 131s.
// TCP_USER_TIMEOUT can only shorten that (never below the first expiry, 1s),
// and a driver's connect_timeout cuts it short per address.
//
// Idle connection (keep-alive). The keep-alive timer first expires
// keepalives_idle after the last segment received (the last ACK), then every
// keepalives_interval. The n-th expiry (n = 0, 1, ...) happens at
// idle + n*interval, with n probes already unanswered. Without
// TCP_USER_TIMEOUT the connection is closed at the expiry where
// n = keepalives_count: idle + count*interval. With TCP_USER_TIMEOUT the
// count is ignored: the connection is closed at the first expiry with n >= 1
// (at least one probe sent) at which the time since the last ACK is >= the
// user timeout, that is at idle + n*interval with
// n = max(1, ceil((user_timeout - idle) / interval)). With idle 10s,
// interval 5s, count 3: 25s without a user timeout; 15s with 4500ms (n=1);
// 20s with 16000ms (n=2); 40s with 37000ms (n=6, three probes more than the
// count).
//
// Unacknowledged data (retransmission). The retransmission timeout starts at
// tcp_rto_min (200ms on a fast path; it is larger on a slow one) and doubles
// after every retransmission up to tcp_rto_max (120s). Without
// TCP_USER_TIMEOUT the connection is closed at the first expiry at which the
// time since the data was sent reaches the time tcp_retries2 backoffs from
// tcp_rto_min take: 0.2s*(2^10-1) + 6*120s = 924.6s for tcp_retries2=15.
// With TCP_USER_TIMEOUT tcp_retries2 is ignored; the timeout counts from the
// first retransmission (one RTO after the send) and the timer is shortened to
// expire exactly then: 200ms + user timeout.
//
// Zero window. A live peer that stops reading (a COPY whose backend waits on
// a lock) advertises a zero window and ACKs every window probe; the probes
// back off up to tcp_rto_max. Nothing ends that, except TCP_USER_TIMEOUT:
// since Linux 5.1 it also aborts a connection whose window stayed zero that
// long (ZeroWindow).
//
// pgfast's dead-peer watcher (Watch, WatchedIdle, WatchedUnacked). While a
// Read or Write is blocked on a socket, pgfast samples its TCP_INFO every
// WatchTick. The peer is silent when something is outstanding (tcpi_unacked,
// or tcpi_probes: a keep-alive or window probe unanswered), nothing was
// received for the window (from the last ACK for probes, as the kernel
// counts; from the watcher's first sight for data), and the socket has been
// seen waiting unanswered for WatchConfirm. The window is tcp_user_timeout when
// set, else DefaultWatchWindow. A peer dead during a query is found once the
// first keep-alive probe (keepalives_idle after the last ACK) goes unanswered:
// at max(idle + WatchTick + WatchConfirm, window + WatchTick) at the latest;
// with data unacknowledged at window + WatchTick. A live peer with a zero
// window answers every probe and is never silent.
package timeline
