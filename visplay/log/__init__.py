"""The run log and what reads it back: ``runlog`` (the only SQL writer), ``diff`` (compare two logs), ``replay``
(re-execute a run from its log), ``export`` (tables to parquet/CSV)."""
