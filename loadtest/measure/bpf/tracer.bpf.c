// socklab's kernel tracer: every TCP state change, accept() and SYN-ACK re-send of one server port,
// as fixed-size records in a ring buffer (no wakeup per record: the loader drains it every 20 ms).
// The pairing into connections is done afterwards, in Python (loadtest/measure/kernel_pairs.py).
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "tracer.h"

char LICENSE[] SEC("license") = "GPL";

const volatile __u16 port = 0;         // the server's port
const volatile __u32 netns[MAX_NETNS];  // the run's network namespaces (inode numbers)
const volatile __u32 n_netns = 0;

__u64 lost = 0;  // records the ring buffer could not take (full): each one an event not recorded

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, RING_BYTES);
} ring SEC(".maps");

static __always_inline int ours(__u32 inum)
{
	for (__u32 i = 0; i < MAX_NETNS && i < n_netns; i++)
		if (netns[i] == inum)
			return 1;
	return 0;
}

static __always_inline void emit(struct record *r)
{
	r->ts = bpf_ktime_get_ns();
	if (bpf_ringbuf_output(&ring, r, sizeof(*r), BPF_RB_NO_WAKEUP))
		__sync_fetch_and_add(&lost, 1);
}

// A socket the tracepoint hands over (trusted: its fields are read directly, no probe read).
static __always_inline void emit_sock(const struct sock *sk, __u16 lport, __u8 kind, __u8 old, __u8 new, __u64 extra)
{
	struct record r = {
		.sk = (__u64)sk,
		.extra = extra,
		.laddr = sk->__sk_common.skc_rcv_saddr,
		.raddr = sk->__sk_common.skc_daddr,
		.lport = lport,
		.rport = bpf_ntohs(sk->__sk_common.skc_dport),
		.kind = kind,
		.old = old,
		.new = new,
	};
	emit(&r);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(state, const struct sock *sk, const int oldstate, const int newstate)
{
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	__u16 lport = sk->__sk_common.skc_num, rport = bpf_ntohs(sk->__sk_common.skc_dport);
	// Going to CLOSE, a socket has already given its port back (skc_num 0); its inet_sport keeps it.
	if (!lport && newstate == TCP_CLOSE)
		lport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	if (lport != port && rport != port)
		return 0;
	if (!ours(sk->__sk_common.skc_net.net->ns.inum))
		return 0;
	emit_sock(sk, lport, KIND_STATE, oldstate, newstate, 0);
	return 0;
}

SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(synack, const struct sock *sk, const struct request_sock *req)
{
	if (sk->__sk_common.skc_num != port || !ours(sk->__sk_common.skc_net.net->ns.inum))
		return 0;
	emit_sock((const struct sock *)req, port, KIND_SYNACK, 0, 0, (__u64)sk);
	return 0;
}

struct sys_exit {
	__u64 common;
	__s32 nr;
	__s64 ret;
};

static __always_inline int accepted(struct sys_exit *ctx)
{
	if (ctx->ret < 0)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
	struct file **fds = BPF_CORE_READ(task, files, fdt, fd);
	struct file *file = NULL;
	bpf_probe_read_kernel(&file, sizeof(file), fds + ctx->ret);
	if (!file)
		return 0;
	struct socket *sock = BPF_CORE_READ(file, private_data);
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sk, __sk_common.skc_num) != port)
		return 0;
	if (!ours(BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum)))
		return 0;
	struct record r = {
		.sk = (__u64)sk,
		.extra = bpf_get_current_pid_tgid() >> 32,  // the accepting process: which worker took it
		.laddr = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr),
		.raddr = BPF_CORE_READ(sk, __sk_common.skc_daddr),
		.lport = port,
		.rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport)),
		.kind = KIND_ACCEPT,
	};
	emit(&r);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int accept4_exit(struct sys_exit *ctx) { return accepted(ctx); }

SEC("tracepoint/syscalls/sys_exit_accept")
int accept_exit(struct sys_exit *ctx) { return accepted(ctx); }
