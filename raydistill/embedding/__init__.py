"""Video embeddings for selection: VideoMAE (transformers)."""

from raydistill.embedding.videomae import (VideoMAEEmbedder, embedding_name, load_videomae,
                                           train_videomae_classifier)

__all__ = ["VideoMAEEmbedder", "embedding_name", "load_videomae", "train_videomae_classifier"]
