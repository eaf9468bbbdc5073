"""One monitor in the kernel: the Instance interface (base.py) and its two kinds,
the pinned one that `load` leaves in bpffs (pins, id record, locks, settings, load,
attach) and the private one a command loads for itself (`run`, `serve --attach`);
the one counters reader and the one set of start-up checks."""
