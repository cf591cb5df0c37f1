"""Where a run happens: its private network namespace, and several hosts on one machine (the test
bed's namespaces, its interfaces and its user-space wire)."""
