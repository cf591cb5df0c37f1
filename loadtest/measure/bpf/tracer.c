// The loader of socklab's kernel tracer (tracer.bpf.c):
//   socklab-tracer PORT OUT NETNS...
// Loads and attaches the probes for PORT in those network namespaces, prints "attached", writes every
// record to OUT as it drains the ring buffer (every 20 ms: no wakeup per event), and on SIGINT or
// SIGTERM drains what is left and prints one JSON line: the events the ring buffer could not take.
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <bpf/libbpf.h>
#include <linux/types.h>

#include "tracer.h"

#include "tracer.skel.h"

#define DRAIN_US 20000  // 20 ms: at 10,000 connections a second, ~5 MB of the 16 MB buffer at most

static volatile sig_atomic_t stopping;

static void on_signal(int sig) { (void)sig; stopping = 1; }

static void *detach(void *link)
{
	bpf_link__destroy(link);
	return NULL;
}

static int write_record(void *ctx, void *data, size_t size)
{
	return fwrite(data, size, 1, (FILE *)ctx) == 1 ? 0 : -EIO;
}

static int quiet(enum libbpf_print_level level, const char *fmt, va_list args)
{
	return level == LIBBPF_WARN ? vfprintf(stderr, fmt, args) : 0;
}

int main(int argc, char **argv)
{
	if (argc < 4 || argc - 3 > MAX_NETNS) {
		fprintf(stderr, "usage: socklab-tracer PORT OUT NETNS... (1 to %d namespaces)\n", MAX_NETNS);
		return 2;
	}
	libbpf_set_print(quiet);
	struct rlimit unlimited = {RLIM_INFINITY, RLIM_INFINITY};
	setrlimit(RLIMIT_MEMLOCK, &unlimited);  // older kernels charge BPF memory to it
	struct tracer_bpf *skel = tracer_bpf__open();
	if (!skel) {
		fprintf(stderr, "socklab-tracer: cannot open the BPF object: %s\n", strerror(errno));
		return 1;
	}
	skel->rodata->port = (__u16)atoi(argv[1]);
	skel->rodata->n_netns = argc - 3;
	for (int i = 3; i < argc; i++)
		skel->rodata->netns[i - 3] = (__u32)strtoul(argv[i], NULL, 10);
	int err = tracer_bpf__load(skel);
	if (!err)
		err = tracer_bpf__attach(skel);
	if (err) {
		fprintf(stderr, "socklab-tracer: cannot load or attach the probes: %s\n", strerror(-err));
		tracer_bpf__destroy(skel);
		return 1;
	}
	FILE *out = fopen(argv[2], "wb");
	if (!out) {
		fprintf(stderr, "socklab-tracer: cannot write %s: %s\n", argv[2], strerror(errno));
		tracer_bpf__destroy(skel);
		return 1;
	}
	setvbuf(out, NULL, _IOFBF, 1 << 20);
	struct ring_buffer *ring = ring_buffer__new(bpf_map__fd(skel->maps.ring), write_record, out, NULL);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	printf("attached\n");
	fflush(stdout);
	// The probes write without a wakeup (BPF_RB_NO_WAKEUP): epoll would never report the buffer ready, so
	// it is drained on a timer instead.
	while (!stopping && ring) {
		usleep(DRAIN_US);
		if (ring_buffer__consume(ring) < 0)
			break;
	}
	// Detach first, then the last drain and the count: a record the probes wrote while they were being
	// detached is written or counted lost, never neither.  Each detach waits for an RCU grace period
	// (~40 ms): side by side, not in turn.
	struct bpf_link *links[] = {skel->links.state, skel->links.synack, skel->links.accept4_exit,
				    skel->links.accept_exit};
	pthread_t threads[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&threads[i], NULL, detach, links[i]);
	for (int i = 0; i < 4; i++)
		pthread_join(threads[i], NULL);
	skel->links.state = skel->links.synack = skel->links.accept4_exit = skel->links.accept_exit = NULL;
	if (ring)
		ring_buffer__consume(ring);
	fclose(out);
	printf("{\"lost_events\": %llu}\n", (unsigned long long)skel->bss->lost);
	fflush(stdout);
	ring_buffer__free(ring);
	tracer_bpf__destroy(skel);
	return 0;
}
