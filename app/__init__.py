"""The DELBench server: FastAPI routes, SQLAlchemy models, settings and services.

Never imports torch (a test checks): the API validates uploads with the evaluator's NumPy-only selection code
and hands evaluation to the workers by task name.
"""
