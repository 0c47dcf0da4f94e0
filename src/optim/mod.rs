//! Adaptive Gradient Clipping, SGD with Nesterov momentum, schedules and EMA.
