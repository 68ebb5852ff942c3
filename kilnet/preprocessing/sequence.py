"""`keras.preprocessing.sequence`: padding token sequences (kilnet.utils.pad_sequences)."""

from kilnet.utils import pad_sequences

__all__ = ["pad_sequences"]
