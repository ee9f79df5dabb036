"""Text-GAN metrics: exact fast BLEU / Self-BLEU, NLL, diversity and FED."""
