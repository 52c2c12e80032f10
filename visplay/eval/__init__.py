"""Evaluation on local benchmark files: ``benchmarks`` (loaders), ``scoring`` (rule-based answers), ``run``
(``visplay eval``: generate, judge, log)."""
