"""Reading the ring: the loop that takes batches, hands them to a view and commits
what was written (follow.py), its guarantees (losses, backlog, stops), and where the
lines go (sink.py, logfile.py).  Knows no output format."""
