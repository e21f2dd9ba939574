"""What the Slicer modules import (standard library only): engine command lines, the process runner, reading
results, the training run and training set, dependency checks."""
