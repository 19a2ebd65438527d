"""What this machine is: processor, cores, and what the catalogue knows of its power."""
