"""The VQ-VAE-2 of the reference: the model (:mod:`.model`), its code-map extractor
(:mod:`.extractor`, ``vqvae-top`` / ``vqvae-bottom``) and its training (:mod:`.train`,
``train_vqvae``; imported on use)."""

from .extractor import VQVAEExtractor
from .model import VQVAE, vqvae_from_state_dict

__all__ = ["VQVAE", "VQVAEExtractor", "vqvae_from_state_dict"]
