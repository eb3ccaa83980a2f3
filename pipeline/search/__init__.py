"""Optuna search: coarse-to-fine rounds over log-uniform ranges with pruning.

`rounds` drives the rounds of one benchmark and writes its result (`runner.run_search` is the
stages' entry point); `workers` runs a round's trials in this or spawned processes within the
shared `budget`; `objective` scores one trial; `spaces` samples and narrows ranges; `samplers`
makes samplers and pruners; `storage` opens studies and handles trials cut off by a crash
(`retrying_storage` rides out database outages); `trial_loop` is each worker's ask/tell loop;
`resume` runs a round's budget to the end through crashed workers; `plots` draws a study.
"""
