//! `evaluate` against a brute-force reference and hand-computed cases.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

/// The reference: every distance in `f64` by a naive loop, a full sort by (distance, index),
/// then the metric definitions applied literally to the sorted list.
fn brute_force(input: &EvalInput<'_>, distance: Distance, ks: &[usize]) -> Metrics {
    let dim = input.dim;
    let (gallery, gallery_labels) = match input.gallery {
        Some(g) => (g.embeddings, g.labels),
        None => (input.queries, input.query_labels),
    };
    let norm = |x: &[f32]| x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
    let mut recall = vec![0.0; ks.len()];
    let (mut p1, mut rp, mut map, mut counted, mut skipped) = (0.0, 0.0, 0.0, 0usize, 0usize);
    for (i, q) in input.queries.chunks(dim).enumerate() {
        let label = input.query_labels[i];
        let mut ranked: Vec<(f64, usize)> = Vec::new();
        for (j, g) in gallery.chunks(dim).enumerate() {
            if input.gallery.is_none() && j == i {
                continue;
            }
            let d = match distance {
                Distance::Cosine => {
                    let dot: f64 = q.iter().zip(g).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
                    let (nq, ng) = (norm(q), norm(g));
                    if nq == 0.0 || ng == 0.0 { 1.0 } else { 1.0 - dot / (nq * ng) }
                }
                Distance::Euclidean => {
                    q.iter().zip(g).map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2)).sum::<f64>().sqrt()
                }
            };
            ranked.push((d, j));
        }
        ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let rel: Vec<bool> = ranked.iter().map(|&(_, j)| gallery_labels[j] == label).collect();
        let r = rel.iter().filter(|&&x| x).count();
        if r == 0 {
            skipped += 1;
            continue;
        }
        counted += 1;
        for (acc, &k) in recall.iter_mut().zip(ks) {
            if rel.iter().take(k).any(|&x| x) {
                *acc += 1.0;
            }
        }
        if rel[0] {
            p1 += 1.0;
        }
        rp += rel[..r].iter().filter(|&&x| x).count() as f64 / r as f64;
        let mut ap = 0.0;
        for i in 1..=r {
            if rel[i - 1] {
                let precision = rel[..i].iter().filter(|&&x| x).count() as f64 / i as f64;
                ap += precision;
            }
        }
        map += ap / r as f64;
    }
    let c = counted as f64;
    Metrics {
        recall_at_k: ks.iter().zip(&recall).map(|(&k, &v)| (k, v / c)).collect(),
        precision_at_1: p1 / c,
        r_precision: rp / c,
        map_at_r: map / c,
        nmi: None,
        ami: None,
        queries: counted,
        skipped_queries: skipped,
    }
}

/// Class centres plus noise, so the metrics land away from 0 and 1; classes of unequal sizes.
fn clustered(n: usize, dim: usize, classes: i64, label_offset: i64, seed: u64) -> (Vec<f32>, Vec<i64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..classes as usize * dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let mut data = Vec::with_capacity(n * dim);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        // Squaring skews the class sizes.
        let c = (rng.random::<f64>().powi(2) * classes as f64) as usize;
        labels.push(c as i64 + label_offset);
        for t in 0..dim {
            data.push(centres[c * dim + t] + rng.random_range(-0.9f32..0.9));
        }
    }
    (data, labels)
}

fn assert_metrics_close(got: &Metrics, want: &Metrics, what: &str) {
    let close = |a: f64, b: f64, name: &str| assert!((a - b).abs() <= 1e-6, "{what} {name}: {a} vs reference {b}");
    assert_eq!(got.recall_at_k.keys().collect::<Vec<_>>(), want.recall_at_k.keys().collect::<Vec<_>>());
    for (k, v) in &want.recall_at_k {
        close(got.recall_at_k[k], *v, &format!("R@{k}"));
    }
    close(got.precision_at_1, want.precision_at_1, "P@1");
    close(got.r_precision, want.r_precision, "R-precision");
    close(got.map_at_r, want.map_at_r, "MAP@R");
    assert_eq!((got.queries, got.skipped_queries), (want.queries, want.skipped_queries), "{what} query counts");
}

fn no_clustering(k: &[usize], distance: Distance) -> EvalOptions {
    EvalOptions { k: k.to_vec(), distance, cluster: false, ..EvalOptions::default() }
}

#[test]
fn self_retrieval_matches_brute_force() {
    let dim = 8;
    // 300 rows: more than one query block, with a few singleton classes among 40.
    let (data, labels) = clustered(300, dim, 40, 0, 10);
    let ks = [1, 2, 4, 8, 16, 1000];
    for distance in [Distance::Cosine, Distance::Euclidean] {
        let input = EvalInput::self_retrieval(&data, &labels, dim);
        let got = evaluate(&input, &no_clustering(&ks, distance)).unwrap();
        let want = brute_force(&input, distance, &ks);
        assert!(want.skipped_queries > 0, "the data should hold lone queries");
        assert!(want.map_at_r > 0.05 && want.map_at_r < 0.95, "uninformative data: {want:?}");
        assert_metrics_close(&got, &want, &format!("self {distance}"));
    }
}

#[test]
fn query_gallery_matches_brute_force() {
    let dim = 6;
    // Queries with classes 0..30, gallery with classes 5..35: some query classes have no
    // gallery member and are skipped.
    let (queries, query_labels) = clustered(120, dim, 30, 0, 11);
    let (gallery, gallery_labels) = clustered(260, dim, 30, 5, 11);
    let ks = [1, 10, 20, 30, 40, 50];
    for distance in [Distance::Cosine, Distance::Euclidean] {
        let input = EvalInput::query_gallery(&queries, &query_labels, &gallery, &gallery_labels, dim);
        let got = evaluate(&input, &no_clustering(&ks, distance)).unwrap();
        let want = brute_force(&input, distance, &ks);
        assert!(want.skipped_queries > 0 && want.queries > 0);
        assert_metrics_close(&got, &want, &format!("gallery {distance}"));
    }
}

#[test]
fn ties_in_distance_rank_by_gallery_index() {
    // Both gallery items are at distance 1 from the query; the first one in the gallery
    // ranks first, whatever its class.
    let query = [0.0, 0.0];
    let gallery = [1.0, 0.0, 0.0, 1.0];
    let options = no_clustering(&[1, 2], Distance::Euclidean);
    let wrong_first = evaluate(&EvalInput::query_gallery(&query, &[7], &gallery, &[3, 7], 2), &options).unwrap();
    assert_eq!((wrong_first.precision_at_1, wrong_first.recall_at_k[&2]), (0.0, 1.0));
    assert_eq!(wrong_first.map_at_r, 0.0, "R = 1 and rank 1 is wrong");
    let right_first = evaluate(&EvalInput::query_gallery(&query, &[7], &gallery, &[7, 3], 2), &options).unwrap();
    assert_eq!((right_first.precision_at_1, right_first.map_at_r), (1.0, 1.0));
}

#[test]
fn duplicate_embeddings_rank_by_index() {
    // All four rows equal: every distance ties, so each query's ranking is the other rows in
    // index order. Labels 0 1 0 1:
    //   query 0 sees labels 1 0 1 (first relevant at rank 2), query 1 sees 0 0 1 (rank 3),
    //   query 2 sees 0 1 1 (rank 1), query 3 sees 0 1 0 (rank 2); R = 1 for every query.
    let data = [0.3, -0.2, 0.3, -0.2, 0.3, -0.2, 0.3, -0.2];
    let labels = [0, 1, 0, 1];
    for distance in [Distance::Cosine, Distance::Euclidean] {
        let m = evaluate(&EvalInput::self_retrieval(&data, &labels, 2), &no_clustering(&[1, 2, 3], distance)).unwrap();
        assert_eq!(m.recall_at_k[&1], 0.25, "{distance}");
        assert_eq!(m.recall_at_k[&2], 0.75, "{distance}");
        assert_eq!(m.recall_at_k[&3], 1.0, "{distance}");
        assert_eq!((m.precision_at_1, m.r_precision, m.map_at_r), (0.25, 0.25, 0.25), "{distance}");
    }
}

#[test]
fn lone_queries_are_skipped_and_counted() {
    // Class 9 has one member: it cannot retrieve anything and is left out of the averages.
    let data = [0.0, 0.1, 5.0, 5.1, 9.0];
    let labels = [1, 1, 2, 2, 9];
    let m = evaluate(&EvalInput::self_retrieval(&data, &labels, 1), &no_clustering(&[1], Distance::Euclidean)).unwrap();
    assert_eq!((m.queries, m.skipped_queries), (4, 1));
    assert_eq!((m.recall_at_k[&1], m.map_at_r), (1.0, 1.0));
    // In query-vs-gallery mode, a query whose class is missing from the gallery.
    let m = evaluate(
        &EvalInput::query_gallery(&[0.0, 5.0], &[1, 4], &[0.2, 5.2], &[1, 2], 1),
        &no_clustering(&[1], Distance::Euclidean),
    )
    .unwrap();
    assert_eq!((m.queries, m.skipped_queries, m.precision_at_1), (1, 1, 1.0));
}

#[test]
fn k_larger_than_the_gallery_means_all_of_it() {
    // The class-mate is the farthest item: found within K = 100 although only 4 exist.
    let data = [0.0, 1.0, 2.0, 3.0, 10.0];
    let labels = [5, 1, 2, 3, 5];
    let m = evaluate(&EvalInput::self_retrieval(&data, &labels, 1), &no_clustering(&[1, 3, 100], Distance::Euclidean))
        .unwrap();
    assert_eq!((m.queries, m.skipped_queries), (2, 3));
    assert_eq!((m.recall_at_k[&1], m.recall_at_k[&3], m.recall_at_k[&100]), (0.0, 0.0, 1.0));
    assert_eq!(m.map_at_r, 0.0);
}

#[test]
fn a_single_class_is_perfect() {
    let (data, _) = clustered(50, 4, 5, 0, 12);
    let labels = vec![3; 50];
    let m = evaluate(&EvalInput::self_retrieval(&data, &labels, 4), &EvalOptions::default()).unwrap();
    assert_eq!((m.precision_at_1, m.r_precision, m.map_at_r), (1.0, 1.0, 1.0));
    assert!(m.recall_at_k.values().all(|&v| v == 1.0));
    // scikit-learn scores one class against one cluster as a perfect match.
    assert_eq!((m.nmi, m.ami), (Some(1.0), Some(1.0)));
}

#[test]
fn separated_classes_give_perfect_clustering_scores() {
    // Four tight classes far apart: k-means with four clusters recovers them exactly.
    let mut data = Vec::new();
    let mut labels = Vec::new();
    let corners = [[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0], [-10.0, -10.0, -10.0]];
    for (c, corner) in corners.iter().enumerate() {
        for i in 0..10 {
            data.extend(corner.iter().map(|v| v + 0.01 * i as f32));
            labels.push(c as i64 * 100);
        }
    }
    for distance in [Distance::Cosine, Distance::Euclidean] {
        let options = EvalOptions { distance, seed: 3, ..EvalOptions::default() };
        let m = evaluate(&EvalInput::self_retrieval(&data, &labels, 3), &options).unwrap();
        let (nmi, ami) = (m.nmi.unwrap(), m.ami.unwrap());
        assert!((nmi - 1.0).abs() < 1e-12 && (ami - 1.0).abs() < 1e-12, "{distance}: NMI {nmi}, AMI {ami}");
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    let options = EvalOptions::default();
    let err = evaluate(&EvalInput::self_retrieval(&[0.0, f32::NAN, 1.0, 1.0], &[0, 0], 2), &options).unwrap_err();
    assert_eq!(err.to_string(), "queries: row 0, column 1 is NaN; embeddings must be finite");
    let err = evaluate(&EvalInput::query_gallery(&[0.0, 1.0], &[0], &[1.0, f32::NEG_INFINITY], &[0], 2), &options)
        .unwrap_err();
    assert_eq!(err.to_string(), "gallery: row 0, column 1 is -inf; embeddings must be finite");
    let err = evaluate(&EvalInput::self_retrieval(&[0.0, 1.0, 2.0], &[0, 1], 2), &options).unwrap_err();
    assert!(err.to_string().starts_with("queries: 3 values for 2 labels of dimension 2"), "{err}");
    let err = evaluate(&EvalInput::self_retrieval(&[0.0, 1.0], &[0, 1], 1), &options).unwrap_err();
    assert!(matches!(err, EvalError::NoValidQueries { queries: 2, .. }), "{err}");
    let no_k = EvalOptions { k: vec![], ..EvalOptions::default() };
    let err = evaluate(&EvalInput::self_retrieval(&[0.0, 1.0], &[0, 0], 1), &no_k).unwrap_err();
    assert!(err.to_string().starts_with("options.k:"), "{err}");
    let zero_k = EvalOptions { k: vec![1, 0], ..EvalOptions::default() };
    assert!(evaluate(&EvalInput::self_retrieval(&[0.0, 1.0], &[0, 0], 1), &zero_k).is_err());
}

#[test]
fn metrics_round_trip_through_json_and_ron() {
    let (data, labels) = clustered(40, 3, 4, 0, 13);
    let m = evaluate(&EvalInput::self_retrieval(&data, &labels, 3), &EvalOptions::default()).unwrap();
    let json = serde_json::to_value(&m).unwrap();
    assert!(json["recall_at_k"]["1"].is_number(), "{json}");
    assert_eq!(serde_json::from_value::<Metrics>(json).unwrap(), m);
    let ron_text = ron::to_string(&m).unwrap();
    assert_eq!(ron::from_str::<Metrics>(&ron_text).unwrap(), m);
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let (data, labels) = clustered(600, 5, 30, 0, 14);
    let input = EvalInput::self_retrieval(&data, &labels, 5);
    let options = EvalOptions { k: vec![1, 4], ..EvalOptions::default() };
    let run = |threads| {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| evaluate(&input, &options))
    };
    assert_eq!(run(1).unwrap(), run(3).unwrap());
}
