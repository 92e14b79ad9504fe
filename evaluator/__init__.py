"""The DELBench evaluator: pool and task data, the fixed MAE + segmentation protocol, metrics, baselines.

A pure library (no web, no database). Modules that need torch import it themselves; importing this
package does not.
"""
