"""What each command does, over the layers below: use cases that return models or
drive a stream (run, stats and status, doctor, serve).  No flags, no stdout."""
