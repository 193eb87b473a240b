//! Cross-batch memory (XBM; Wang et al., "Cross-Batch Memory for Embedding Learning", CVPR
//! 2020), as pytorch-metric-learning's `CrossBatchMemory` keeps it.
//!
//! A ring buffer of the latest `size` embeddings and their labels. Each step adds the batch
//! *before* the loss runs (PML's order), so the references a loss sees hold the batch itself:
//! the slot of each batch row goes to the loss as its self row, and pairs of a row with its
//! own copy are left out (PML's `remove_self_comparisons`). Until the buffer has wrapped once,
//! only the slots written so far are references (PML's `embedding_memory[:queue_idx]`); after,
//! all of them, in slot order. Stored embeddings are copies, so no gradient reaches them.
//!
//! The memory is part of a cell's training state: checkpoints save it (see [`Self::to_bytes`]),
//! so that a resumed cell compares with the same references as an uninterrupted one.

use anyhow::{Context, bail, ensure};
use dmlbench_host::References;
use safetensors::tensor::{Dtype, TensorView};

/// The memory of one cell.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossBatchMemory {
    size: usize,
    d: usize,
    /// size×d, row-major; rows past `written` are zero until written.
    embeddings: Vec<f32>,
    labels: Vec<i64>,
    /// The next slot to write (PML's `queue_idx`).
    next: usize,
    /// Whether every slot has been written at least once (PML's `has_been_filled`).
    filled: bool,
    /// Slot of each row of the batch added last.
    self_rows: Vec<u32>,
}

impl CrossBatchMemory {
    /// An empty memory of `size` embeddings of size `d`.
    pub fn new(size: usize, d: usize) -> Self {
        CrossBatchMemory {
            size,
            d,
            embeddings: vec![0.0; size * d],
            labels: vec![0; size],
            next: 0,
            filled: false,
            self_rows: Vec::new(),
        }
    }

    /// Copies a batch of `labels.len()` rows into the next slots, wrapping around.
    ///
    /// # Panics
    /// When the batch is larger than the memory (the plan refuses such a grid entry) or its
    /// buffer does not hold `labels.len()` rows of size d.
    pub fn enqueue(&mut self, embeddings: &[f32], labels: &[i64]) {
        let n = labels.len();
        assert!(n <= self.size, "a batch of {n} does not fit a memory of {}", self.size);
        assert_eq!(embeddings.len(), n * self.d, "batch buffer does not hold {n} rows of {}", self.d);
        self.self_rows.clear();
        for (i, &label) in labels.iter().enumerate() {
            let slot = (self.next + i) % self.size;
            self.embeddings[slot * self.d..(slot + 1) * self.d]
                .copy_from_slice(&embeddings[i * self.d..(i + 1) * self.d]);
            self.labels[slot] = label;
            self.self_rows.push(slot as u32);
        }
        let previous = self.next;
        self.next = (self.next + n) % self.size;
        if self.next <= previous {
            self.filled = true;
        }
    }

    /// Number of rows the references hold now.
    pub fn len(&self) -> usize {
        if self.filled { self.size } else { self.next }
    }

    /// Whether nothing was added yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The references for the batch added last: the written slots and, for each batch row,
    /// its own slot.
    pub fn references(&self) -> References<'_> {
        let m = self.len();
        References {
            embeddings: &self.embeddings[..m * self.d],
            labels: &self.labels[..m],
            self_rows: Some(&self.self_rows),
        }
    }

    /// The memory as safetensors bytes: `embeddings` [size, d] f32, `labels` [size] i64 and
    /// `position` [2] i64 (next slot, filled flag).
    pub fn to_bytes(&self) -> anyhow::Result<Vec<u8>> {
        let embeddings: Vec<u8> = self.embeddings.iter().flat_map(|v| v.to_le_bytes()).collect();
        let labels: Vec<u8> = self.labels.iter().flat_map(|v| v.to_le_bytes()).collect();
        let position: Vec<u8> =
            [self.next as i64, i64::from(self.filled)].iter().flat_map(|v| v.to_le_bytes()).collect();
        let tensors = [
            ("embeddings", TensorView::new(Dtype::F32, vec![self.size, self.d], &embeddings)?),
            ("labels", TensorView::new(Dtype::I64, vec![self.size], &labels)?),
            ("position", TensorView::new(Dtype::I64, vec![2], &position)?),
        ];
        Ok(safetensors::serialize(tensors, None)?)
    }

    /// Restores what [`to_bytes`](Self::to_bytes) wrote into a memory of the same size and d.
    pub fn load_bytes(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let tensors = safetensors::SafeTensors::deserialize(bytes).context("not a safetensors memory")?;
        let tensor = |name: &str, dtype: Dtype, shape: &[usize]| -> anyhow::Result<Vec<u8>> {
            let t = tensors.tensor(name).with_context(|| format!("no tensor '{name}'"))?;
            ensure!(
                t.dtype() == dtype && t.shape() == shape,
                "tensor '{name}' is {:?} {:?}, expected {dtype:?} {shape:?}",
                t.dtype(),
                t.shape()
            );
            Ok(t.data().to_vec())
        };
        let embeddings = tensor("embeddings", Dtype::F32, &[self.size, self.d])?;
        let labels = tensor("labels", Dtype::I64, &[self.size])?;
        let position = tensor("position", Dtype::I64, &[2])?;
        let word = |b: &[u8]| i64::from_le_bytes(b.try_into().expect("8 bytes"));
        let (next, filled) = (word(&position[..8]), word(&position[8..]));
        if next < 0 || next as usize >= self.size.max(1) || !(0..=1).contains(&filled) {
            bail!("position ({next}, {filled}) does not fit a memory of {}", self.size);
        }
        self.embeddings = embeddings.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4"))).collect();
        self.labels = labels.chunks_exact(8).map(word).collect();
        self.next = next as usize;
        self.filled = filled == 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(first: f32, n: usize) -> Vec<f32> {
        (0..n).map(|i| first + i as f32).collect()
    }

    #[test]
    fn fills_in_order_then_wraps_like_pml() {
        // Size 5, d = 1, batches of 3: slots 0..3, then 3, 4, 0 (wrapped), then 1, 2, 3.
        let mut memory = CrossBatchMemory::new(5, 1);
        assert!(memory.is_empty());
        memory.enqueue(&rows(10.0, 3), &[0, 1, 2]);
        let r = memory.references();
        assert_eq!(
            (r.embeddings, r.labels, r.self_rows),
            (&[10.0, 11.0, 12.0][..], &[0, 1, 2][..], Some(&[0, 1, 2][..]))
        );
        memory.enqueue(&rows(20.0, 3), &[3, 4, 5]);
        let r = memory.references();
        // Wrapped: every slot is a reference, in slot order.
        assert_eq!(r.embeddings, &[22.0, 11.0, 12.0, 20.0, 21.0]);
        assert_eq!(r.labels, &[5, 1, 2, 3, 4]);
        assert_eq!(r.self_rows, Some(&[3, 4, 0][..]));
        memory.enqueue(&rows(30.0, 3), &[6, 7, 8]);
        let r = memory.references();
        assert_eq!(r.embeddings, &[22.0, 30.0, 31.0, 32.0, 21.0]);
        assert_eq!(r.self_rows, Some(&[1, 2, 3][..]));
    }

    #[test]
    fn a_batch_as_large_as_the_memory_fills_it_at_once() {
        let mut memory = CrossBatchMemory::new(4, 1);
        memory.enqueue(&rows(0.0, 4), &[0, 0, 1, 1]);
        assert_eq!(memory.len(), 4);
        assert_eq!(memory.references().self_rows, Some(&[0, 1, 2, 3][..]));
    }

    #[test]
    fn saved_memory_restores_exactly_and_refuses_a_misfit() {
        let mut memory = CrossBatchMemory::new(5, 2);
        memory.enqueue(&rows(1.0, 6), &[0, 1, 2]);
        memory.enqueue(&rows(9.0, 6), &[3, 4, 5]);
        let bytes = memory.to_bytes().unwrap();
        let mut restored = CrossBatchMemory::new(5, 2);
        restored.load_bytes(&bytes).unwrap();
        // The self rows belong to a step, not to the memory: the next enqueue sets them.
        assert_eq!(
            (&restored.embeddings, &restored.labels, restored.next, restored.filled),
            (&memory.embeddings, &memory.labels, memory.next, memory.filled)
        );
        memory.enqueue(&rows(5.0, 2), &[7]);
        restored.enqueue(&rows(5.0, 2), &[7]);
        assert_eq!(restored, memory);
        let e = CrossBatchMemory::new(6, 2).load_bytes(&bytes).unwrap_err();
        assert!(format!("{e:#}").contains("expected F32 [6, 2]"), "{e:#}");
        assert!(CrossBatchMemory::new(5, 2).load_bytes(b"garbage").is_err());
    }
}
