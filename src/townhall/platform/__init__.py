"""The shared kernel: ports every module may use, and their adapters."""
