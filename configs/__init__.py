"""Method configs: `get_config(arg)` per method file; shared machinery in `common.py`."""
