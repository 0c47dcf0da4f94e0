//! RandAugment (in progress).
