// The record the kernel tracer writes, one per event: 40 bytes, the layout loadtest/measure/tracer.py reads.
#ifndef SOCKLAB_TRACER_H
#define SOCKLAB_TRACER_H

#define MAX_NETNS 4
#define RING_BYTES (16 << 20)
#define KIND_STATE 0
#define KIND_ACCEPT 1
#define KIND_SYNACK 2

struct record {
	__u64 ts;     // CLOCK_MONOTONIC, ns
	__u64 sk;     // the socket (a request socket for a SYN-ACK re-send)
	__u64 extra;  // the listener, for a SYN-ACK re-send; the accepting process (tgid), for an accept
	__u32 laddr;  // local and remote IPv4 address, network order (0 for IPv6)
	__u32 raddr;
	__u16 lport;  // local and remote port, host order
	__u16 rport;
	__u8 kind;    // KIND_*
	__u8 old;     // TCP states, for KIND_STATE
	__u8 new;
	__u8 pad;
};

#endif
