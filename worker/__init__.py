"""Celery glue between the database's submissions and the evaluator: config, tasks, the reconciler."""
