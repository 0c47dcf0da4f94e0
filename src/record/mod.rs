//! Run records: run directories, the HDF5 metrics log, safetensors checkpoints, replay and reports.
