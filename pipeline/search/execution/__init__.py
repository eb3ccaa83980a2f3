"""Executing a round's trials: worker processes, the trial loop, the shared budget, and crashes.

`rounds` hands each round to `resume.run_budget` as a `job.RoundJob`; everything below it lives here.

Map (module: its job):

* `job`: `RoundJob`, the typed round and processed-data folder every worker process receives.
* `concurrency`: how many worker processes and TensorFlow threads a search uses (`search.workers: auto`).
* `resume`: runs a round's budget to its end through crashed workers, waiting for trials running
  elsewhere; `wait_round_finished` before the next round narrows.
* `budget`: what counts against a round's budget across processes and launchers (`claimed`, costs,
  surplus and discarded trials, `budget_view` of a lowered budget).
* `dispatch`: a round's trials shared out to worker slots (`run_workers`); killed workers replaced.
* `worker_pool`: warm worker processes, one per slot, forked from the fork server, kept across rounds.
* `fork_server`: what the fork server imports (`preload_worker`, `preload_keras`), `keep_warm`, `start_early`.
* `worker`: what a worker process runs: a job (`run_worker`), the objective wrapper (`optimize`),
  the warm process's job loop (`warm_worker`).
* `trial_loop`: each worker's ask/run/tell loop, in place of `Study.optimize`.
* `heartbeats`: a running trial's heartbeat thread, the heartbeat interval and the grace period.
* `stale_trials`: trials cut off by a crash: recognised (`is_dead`, stale heartbeats), failed as
  interrupted and retried (`fail_interrupted`, `InterruptedTrial`).
* `memory`: memory released after each trial (`gc.freeze`), trials per worker process.
* `data_cache`: the processed data a process keeps between rounds.
* `failure_lines`: Optuna's log while trials run: warnings only, a failed trial on one line.
"""
