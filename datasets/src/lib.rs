//! Datasets for dmlbench: loaders for the deep-metric-learning benchmarks with their
//! class-disjoint splits, the image pipeline, feature files and the synthetic generator.

pub mod npy;
