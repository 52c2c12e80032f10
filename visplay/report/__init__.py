"""The report of a run: ``build`` (HTML + text summary), ``plots`` (figures), ``paper`` (Table 1 as data)."""
