"""The unishard command line and the pipeline assembly."""
