"""From a CT volume to numbers: preprocessing, inference and explanation, metrics, clinical measures, midline and
location, follow-up comparison, embeddings."""
