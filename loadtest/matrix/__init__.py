"""Runs and matrices of runs: the run folder and its window, the server and monitor processes, one
isolated cell, and socklab compare | sweep | lab with their --expect bounds."""
