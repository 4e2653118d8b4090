//! An official `.pth` checkpoint as a [`TensorSource`].

use std::collections::BTreeSet;

use super::PthFile;
use crate::error::{Result, VarError};
use crate::weights::{TensorSource, check_shape, is_recomputed_buffer};

/// Tensors straight from an official `.pth` checkpoint.
pub struct PthSource<'a> {
    file: &'a PthFile,
    used: BTreeSet<String>,
}

impl<'a> PthSource<'a> {
    pub fn new(file: &'a PthFile) -> Self {
        Self {
            file,
            used: BTreeSet::new(),
        }
    }
}

impl TensorSource for PthSource<'_> {
    fn take(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self.file.get(key).ok_or_else(|| VarError::MissingTensor {
            key: key.to_string(),
            shape: shape.to_vec(),
        })?;
        check_shape(key, shape, &t.shape)?;
        self.used.insert(key.to_string());
        Ok(self.file.read_f32(key)?)
    }

    fn unused(&self) -> Vec<String> {
        self.file
            .keys()
            .filter(|k| !self.used.contains(*k) && !is_recomputed_buffer(k))
            .map(|k| k.to_string())
            .collect()
    }
}
