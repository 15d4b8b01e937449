"""Configuration, typed records, reason codes and on-disk formats. Imports nothing else of unishard."""
