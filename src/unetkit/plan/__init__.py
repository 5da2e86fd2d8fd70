"""Planning a run from the data and the time budget: fingerprint, rules, timed candidates."""
