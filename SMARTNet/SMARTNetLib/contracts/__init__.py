"""What every layer agrees on, standard library only: errors, events, hemorrhage classes, the model card,
the report's format and file names."""
