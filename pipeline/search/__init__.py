"""Optuna search: coarse-to-fine rounds over log-uniform ranges with pruning.

`rounds.run_search` (called by `pipeline.stages.search`) drives the rounds of one benchmark and
writes its result; `round_setup` sets a round's study and MLflow parent run up, `round_summary`
logs and sums up a round, `selection` picks the best robustly. `execution` runs a round's trials
(worker processes, the trial loop, the shared budget, crashed workers and stale trials: its
`__init__` maps its modules); `objective` scores one trial; `spaces` samples and narrows ranges;
`samplers` makes samplers and pruners; `storage` opens studies (`retrying_storage` rides out
database outages, `journal` keeps journal files whole); `progress` is a round's progress line;
`plots` draws a study.
"""
