"""Thin adapters from model libraries (far/, baselines/) to the harness's VideoModel contract.

These are the only modules that import both ``bench`` and a model library.
"""
