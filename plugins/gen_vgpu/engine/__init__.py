"""The engines: their table, execlist submission and completion, the context image."""
