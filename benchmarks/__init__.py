"""The performance harness: `python -m benchmarks [--only NAME] [--quick]`.

Each workload runs through the project's real entry points (Dagster jobs executed in process,
the warehouse writer) against a simple baseline measured in the same run, in a temporary
directory (and a throwaway PostgreSQL database) removed afterwards. See benchmarks/README.md.
"""
