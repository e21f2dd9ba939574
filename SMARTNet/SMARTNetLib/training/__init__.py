"""Training SMART-Net models: ``smartnet train`` (datalists, sampling, losses, the loop, validation, recipes)."""
