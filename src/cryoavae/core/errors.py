"""The one exception type the pipeline raises for bad input.

Scripts let it propagate: Snakemake then fails the rule, shows the log and removes the outputs.
The message is one line naming the file or config path, what was received and what is accepted.
"""


class InputError(ValueError):
    """Bad user input: a config value, a missing or corrupt file, an unknown ID."""
