"""Optuna search: coarse-to-fine rounds over log-uniform ranges with pruning.

`spaces` samples and narrows ranges, `objective` scores one trial, `storage`
opens studies, `runner` drives the rounds of one benchmark.
"""
