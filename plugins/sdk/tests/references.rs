//! Reference embeddings through a checked instance: what is refused, and how a miner's
//! output loses its self comparisons.

use dmlbench_sdk::Triplets;
use dmlbench_sdk::testing::context;
use dmlbench_sdk::{
    Batch, Context, Error, Instance, Loss, Miner, Plugin, RawReferences, Result, Stats, TupleForm, Tuples,
};

/// Sums the batch; does not take references.
struct Plain;

impl Plugin for Plain {
    type Config = ();
    const ID: &'static str = "plain";
    const NAME: &'static str = "Plain";
    const VERSION: &'static str = "0";
    const SUMMARY: &'static str = "Σ z";
    fn new(_: (), _: &Context) -> Result<Self> {
        Ok(Plain)
    }
}

impl Loss for Plain {
    fn forward_backward(&mut self, _: &Batch<'_>, grad: &mut [f32], _: &mut Stats) -> Result<f64> {
        grad.fill(1.0);
        Ok(0.0)
    }
}

/// Every triplet of the batch and its references, self copies included, as a PML miner given
/// `ref_emb` would see them; records how many it saw.
struct Everything;

impl Plugin for Everything {
    type Config = ();
    const ID: &'static str = "everything";
    const NAME: &'static str = "Everything";
    const VERSION: &'static str = "0";
    const SUMMARY: &'static str = "all triplets";
    fn new(_: (), _: &Context) -> Result<Self> {
        Ok(Everything)
    }
}

impl Miner for Everything {
    const OUTPUT: TupleForm = TupleForm::Triplets;
    const ACCEPTS_REFERENCES: bool = true;

    fn mine(&mut self, batch: &Batch<'_>, stats: &mut Stats) -> Result<Tuples> {
        if batch.references.as_ref().is_some_and(|r| r.self_rows.is_some()) {
            return Err(Error::failed("a miner should not see self rows"));
        }
        let triplets = batch.triplets().into_owned();
        stats.record("seen", triplets.len() as f64);
        Ok(Tuples::Triplets(triplets))
    }
}

// One-dimensional rows keep the buffers readable: the batch is two rows of labels 0 and 1, the
// memory four rows whose slots 2 and 0 hold the batch.
const Z: [f32; 2] = [1.0, 2.0];
const LABELS: [i64; 2] = [0, 1];
const MEMORY: [f32; 4] = [2.0, 5.0, 1.0, 7.0];
const MEMORY_LABELS: [i64; 4] = [1, 0, 0, 1];
const SELF_ROWS: [u32; 2] = [2, 0];

fn memory() -> RawReferences<'static> {
    RawReferences { embeddings: &MEMORY, labels: &MEMORY_LABELS, self_rows: Some(&SELF_ROWS) }
}

#[test]
fn a_loss_without_references_refuses_them() {
    let mut loss = Instance::<Plain>::new((), context(1, 2)).unwrap();
    let e = loss.forward_backward_against(&Z, &LABELS, Some(memory()), None).unwrap_err();
    assert!(e.message().contains("'plain' does not accept reference embeddings"), "{}", e.message());
    assert!(loss.forward_backward(&Z, &LABELS, None).is_ok());
}

#[test]
fn references_are_checked() {
    let mut miner = Instance::<Everything>::new((), context(1, 2)).unwrap();
    let cases: [(RawReferences, &str); 5] = [
        (RawReferences { embeddings: &MEMORY[..3], ..memory() }, "3 reference embedding values for 4 reference labels"),
        (
            RawReferences { embeddings: &[1.0, f32::NAN, 0.0, 0.0], ..memory() },
            "reference embedding row 1, column 0 is NaN",
        ),
        (RawReferences { labels: &[1, 0, 2, 1], ..memory() }, "label 2 of reference row 2 is outside 0..2"),
        (RawReferences { self_rows: Some(&[2, 4]), ..memory() }, "self row of batch row 1 is 4, out of range"),
        (RawReferences { self_rows: Some(&[1, 3]), ..memory() }, ""),
    ];
    for (references, expected) in cases {
        let result = miner.mine_against(&Z, &LABELS, Some(references));
        match expected {
            "" => assert!(result.is_ok(), "{:?}", result.err()),
            _ => {
                let message = result.unwrap_err().message().to_string();
                assert!(message.contains(expected), "{message} lacks {expected}");
            }
        }
    }
    let e = miner.mine_against(&Z, &LABELS, Some(RawReferences { self_rows: Some(&[0, 3]), ..memory() })).unwrap_err();
    assert!(e.message().contains("batch row 0 has label 0 but its self row 0 has label 1"), "{}", e.message());
}

#[test]
fn a_miner_sees_its_own_copies_and_loses_them_afterwards() {
    let mut miner = Instance::<Everything>::new((), context(1, 2)).unwrap();
    let (tuples, stats) = miner.mine_against(&Z, &LABELS, Some(memory())).unwrap();
    // Row 0 (label 0): positives 1 and 2 (its own copy), negatives 0 and 3; row 1 (label 1):
    // positives 0 (its copy) and 3, negatives 1 and 2. Eight triplets seen, four kept.
    assert_eq!(stats.get("seen"), Some(8.0));
    assert_eq!(tuples, Tuples::Triplets(Triplets { a: vec![0, 0, 1, 1], p: vec![1, 1, 3, 3], n: vec![0, 3, 1, 2] }));
}
