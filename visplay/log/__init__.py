"""The run log and what reads it back: ``runlog`` (the only SQL writer), ``rows`` (its row builders), ``diff``
(compare two logs), ``export`` (tables to parquet/CSV), ``schema_docs`` (the tables' documentation). Replay, which
re-executes the loop, lives with the loop (visplay/loop/replay.py)."""
