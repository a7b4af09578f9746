"""The scaling study: the sweep, its analysis, its summary and ablations."""
