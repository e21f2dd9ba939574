"""Models: the network, model folders on disk (bundled and user models) and their registry, the finding
classifier."""
