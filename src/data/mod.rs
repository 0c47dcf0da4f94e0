//! Data sets: the HDF5 layout, importers (CIFAR binary, IDX, class folders) and the prefetching loader.
