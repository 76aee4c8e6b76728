"""Pure computation: no dagster import; frames in, frames out."""
