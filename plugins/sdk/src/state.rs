//! Plugin state as named `f32` tensors in the safetensors layout.
//!
//! A loss with parameters (a classifier, proxies, centres, optimizer buffers) saves them for
//! checkpoints with [`save_tensors`] and restores them with [`TensorMap`], which checks every
//! name and shape and says which one is wrong.
//!
//! ```
//! use dmlbench_sdk::state::{save_tensors, TensorMap};
//! let bytes = save_tensors(&[("centres", &[2, 2], &[1.0, 2.0, 3.0, 4.0])]).unwrap();
//! let mut map = TensorMap::parse(&bytes).unwrap();
//! assert_eq!(map.take("centres", &[2, 2]).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
//! assert!(map.take("centres", &[2, 2]).is_err()); // taken already
//! ```

use std::collections::BTreeMap;

use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};

/// Serialises named row-major `f32` tensors (name, shape, values) to safetensors bytes.
pub fn save_tensors(tensors: &[(&str, &[usize], &[f32])]) -> Result<Vec<u8>> {
    let mut views = Vec::with_capacity(tensors.len());
    // The byte buffers must outlive the views, so convert them all first.
    let bytes: Vec<Vec<u8>> =
        tensors.iter().map(|(_, _, values)| values.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
    for ((name, shape, values), data) in tensors.iter().zip(&bytes) {
        let expected: usize = shape.iter().product();
        if expected != values.len() {
            return Err(Error::failed(format!(
                "state tensor '{name}' has {} values for shape {shape:?}",
                values.len()
            )));
        }
        let view = safetensors::tensor::TensorView::new(Dtype::F32, shape.to_vec(), data)
            .map_err(|e| Error::failed(format!("state tensor '{name}': {e}")))?;
        views.push((name.to_string(), view));
    }
    safetensors::serialize(views, None).map_err(|e| Error::failed(format!("cannot serialise state: {e}")))
}

/// Tensors parsed from safetensors bytes, taken out one by one by name.
#[derive(Debug)]
pub struct TensorMap {
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

impl TensorMap {
    /// Parses safetensors bytes holding `f32` tensors.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| Error::bad_input(format!("state is not valid safetensors: {e}")))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.iter() {
            if view.dtype() != Dtype::F32 {
                return Err(Error::bad_input(format!(
                    "state tensor '{name}' has dtype {:?}, expected F32",
                    view.dtype()
                )));
            }
            let values = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            tensors.insert(name.to_string(), (view.shape().to_vec(), values));
        }
        Ok(TensorMap { tensors })
    }

    /// Removes and returns tensor `name`, checking that its shape is `shape`.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let (found, values) =
            self.tensors.remove(name).ok_or_else(|| Error::bad_input(format!("state has no tensor '{name}'")))?;
        if found != shape {
            return Err(Error::bad_input(format!("state tensor '{name}' has shape {found:?}, expected {shape:?}")));
        }
        Ok(values)
    }

    /// Fails if tensors are left that were never taken (state from another plugin or config).
    pub fn finish(self) -> Result<()> {
        if self.tensors.is_empty() {
            Ok(())
        } else {
            let names: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
            Err(Error::bad_input(format!("state has unexpected tensors: {}", names.join(", "))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_leftovers_are_checked() {
        let bytes = save_tensors(&[("a", &[3], &[1.0, 2.0, 3.0]), ("b", &[], &[5.0])]).unwrap();
        let mut map = TensorMap::parse(&bytes).unwrap();
        let e = map.take("a", &[1, 3]).unwrap_err();
        assert!(e.message().contains("shape [3], expected [1, 3]"), "{e}");
        let map = TensorMap::parse(&bytes).unwrap();
        assert!(map.finish().unwrap_err().message().contains("unexpected tensors: a, b"));
        assert!(save_tensors(&[("c", &[2], &[1.0])]).is_err());
        assert!(TensorMap::parse(b"not safetensors").is_err());
    }
}
