"""Measuring the server side: the monitor process (psutil, inet_diag, the kernel's counters), the
machine's versions and sysctls, and the live view built from them."""
