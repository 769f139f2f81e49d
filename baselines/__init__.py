"""The baseline zoo: models that import relocbench, never the reverse."""
