"""The search: the tuners and asha, the trial recorder, one run, workers, confirmation."""
