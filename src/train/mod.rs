//! Training on Fashion-MNIST (native only): data, and more to come.

pub mod data;
