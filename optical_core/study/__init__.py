"""The scaling study: the sweep, its analysis and its summary."""
