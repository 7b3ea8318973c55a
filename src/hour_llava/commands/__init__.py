"""Subcommands of the `hour-llava` console command (see `hour_llava.cli`)."""
