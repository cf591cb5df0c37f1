#!/usr/bin/env bash
# Build the kernel tracer (tracer.bpf.c + tracer.c) into build/socklab-tracer, against this machine's
# kernel (its BTF: the probes are CO-RE).  Needs clang, bpftool and libbpf-dev; .ci/setup runs it.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p build
case "$(uname -m)" in
    x86_64) arch=x86 ;;
    aarch64) arch=arm64 ;;
    *) arch="$(uname -m)" ;;
esac
bpftool btf dump file /sys/kernel/btf/vmlinux format c > build/vmlinux.h
clang -O2 -g -target bpf -D__TARGET_ARCH_"$arch" -Ibuild -I. -c tracer.bpf.c -o build/tracer.bpf.o
bpftool gen skeleton build/tracer.bpf.o > build/tracer.skel.h
cc -O2 -Wall -Ibuild -I. tracer.c -lbpf -lpthread -o build/socklab-tracer.new
mv build/socklab-tracer.new build/socklab-tracer
