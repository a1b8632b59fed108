"""What a run needs before its first step: config files, huge pages, the multi-host start, the built-in datasets and
the check of its files."""
